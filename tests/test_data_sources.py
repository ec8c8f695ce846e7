"""data.sources: folders laid out like a hub dataset (README `configs:`, shards under subfolders, the hub's split
names) read through `datasets.load_dataset` as they are, for training data and preference data."""

import json

import pytest

from instructkit.config.arguments import InstructkitArguments
from instructkit.data.loading import load_instructions, load_preferences
from instructkit.data.sources import is_hub_layout, read_source
from instructkit.errors import InstructkitError


def test_a_hub_snapshot_is_recognised_by_its_layout(hub_data, tmp_path):
    assert all(is_hub_layout(path) for path in hub_data.values())
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "train.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "flat" / "README.md").write_text("# my data\n")
    assert not is_hub_layout(tmp_path / "flat")


def test_snapshot_splits_are_chosen_by_name_and_rows_named_by_shard(hub_data):
    splits = read_source(str(hub_data["ultrachat"]), "default", splits=("train_sft", "test_sft"))
    assert {k: len(v) for k, v in splits.items()} == {"train_sft": 1100, "test_sft": 100}  # train_gen is not read
    first, last = splits["train_sft"][0], splits["train_sft"][-1]
    assert first.source.endswith("data/train_sft-00000-of-00003.parquet") and first.row == 1
    assert last.source.endswith("data/train_sft-00002-of-00003.parquet") and last.row == 366  # 1100 = 367+367+366
    assert set(first.data) == {"prompt", "prompt_id", "messages"}


def test_training_data_from_a_snapshot(hub_data):
    data = load_instructions(InstructkitArguments(dataset_name=str(hub_data["ultrachat"]),
                                                  dataset_train_split="train_sft", dataset_test_split="test_sft"))
    assert data.report.format == "messages" and data.report.rows == {"train": 1100, "test": 100}
    assert data.report.ignored == {"prompt": 1200, "prompt_id": 1200}  # counted and logged, not dropped silently
    assert "data: columns no field of the format reads, ignored: prompt (1200 rows), prompt_id (1200 rows)" in \
        data.report.lines()


def test_a_missing_split_names_the_ones_present(hub_data):
    with pytest.raises(InstructkitError) as info:
        load_instructions(InstructkitArguments(dataset_name=str(hub_data["ultrachat"])))  # default split: train
    assert (f"{hub_data['ultrachat']} has no split 'train' (it has: train_sft, test_sft, train_gen, test_gen)"
            in str(info.value))


def test_a_snapshot_with_several_configs_needs_one_named(tmp_path, hub_data):
    import shutil

    snapshot = tmp_path / "two"
    shutil.copytree(hub_data["imdb"], snapshot)
    readme = (snapshot / "README.md").read_text()
    (snapshot / "README.md").write_text(readme.replace("configs:\n", "configs:\n- config_name: other\n  data_files:\n"
                                                       "  - split: train\n    path: plain_text/test-*\n", 1))
    with pytest.raises(InstructkitError, match=r"has several configs \(it has: other, plain_text\)"):
        read_source(str(snapshot))
    assert len(read_source(str(snapshot), "other")["train"]) == 20


def test_ultrafeedback_pairs_from_a_snapshot_as_they_are(hub_data):
    """prompt string + whole chosen / rejected conversations: the prompt is checked against their start."""
    data = load_preferences(InstructkitArguments(dataset_name=str(hub_data["ultrafeedback"]),
                                                 dataset_train_split="train_prefs", dataset_test_split="test_prefs"))
    row = data.train[0]
    assert row["prompt"] == [{"role": "user", "content": "train_prefs 0: say yes?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "yes 0."}]
    assert row["rejected"] == [{"role": "assistant", "content": "no 0."}]
    assert set(data.report.ignored) == {"prompt_id", "messages", "score_chosen", "score_rejected"}


def test_a_pair_whose_conversations_do_not_start_with_its_prompt_is_named_by_file_and_row(tmp_path):
    turn = [{"role": "user", "content": "q"}]
    rows = [{"prompt": "q", "chosen": turn + [{"role": "assistant", "content": "a"}],
             "rejected": turn + [{"role": "assistant", "content": "b"}]}] * 2
    rows.append({**rows[0], "prompt": "another question"})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InstructkitError) as info:
        load_preferences(InstructkitArguments(dataset_name=str(path)))
    assert (f"{path} row 3: field 'chosen' is a whole conversation that does not start with the row's prompt"
            in str(info.value))
