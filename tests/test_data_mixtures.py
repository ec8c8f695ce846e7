"""Mixtures as the alignment-handbook and TRL write them (config.mixtures reads them, data.mixtures mixes), each
word with its own tool's meaning, the rows validated with their file and row as for one data set."""

import hashlib
import json
from pathlib import Path

import pytest

from conftest import ROOT
from instructkit.config.arguments import InstructkitArguments
from instructkit.config.parsing import parse_args
from instructkit.data.loading import load_instructions
from instructkit.errors import InstructkitError

trl = pytest.importorskip("trl")
SFT = (InstructkitArguments, trl.SFTConfig, trl.ModelConfig)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


def parsed(tmp_path, text: str, *args: str):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    return parse_args(SFT, ["--config", str(config), *args])[0]


def handbook(entries: str, extra: str = "") -> str:
    return f"dataset_mixture:\n  datasets:\n{entries}{extra}"


def test_the_handbook_form_as_written(tmp_path, hub_data):
    uc = hub_data["ultrachat"]
    args = parsed(tmp_path, handbook(f"    - id: {uc}\n      config: default\n      split: train_sft\n"
                                     "      columns: [messages]\n      weight: 0.5\n"
                                     f"    - id: {uc}\n      config: default\n      split: test_sft\n"
                                     "      columns: [messages]\n", "  test_split_size: 100\n  seed: 3\n"))
    assert args.test_split_size == 100 and args.dataset_mixture_seed == 3
    assert args.dataset_mixture[0] == {"path": str(uc), "config": "default", "split": "train_sft",
                                       "columns": ["messages"], "weight": 0.5}
    data = load_instructions(args, seed=42)
    used = [(m["rows"], m["used"]) for m in data.report.mixture]
    assert used == [(1100, 550), (100, 100)]  # weight: the share of that data set's own rows, a seeded sample
    assert data.report.rows == {"train": 550, "test": 100} and data.train.column_names == ["messages"]
    again = load_instructions(args, seed=7)  # the handbook's seed, not the training seed, draws the rows
    assert again.train["messages"] == data.train["messages"]


def test_trls_form_as_documented(tmp_path, hub_data, embedded):
    """tests/configs/trl_sft_mixture.yaml: datasets (path/name/data_dir/data_files/split/columns/fraction),
    streaming, test_split_size."""
    stories = tmp_path / "tinystories.jsonl"
    stories.write_text("".join(json.dumps({"text": f"Once upon a time {i}."}) + "\n" for i in range(100)))
    text = (ROOT / "tests" / "configs" / "trl_sft_mixture.yaml").read_text()
    config = tmp_path / "trl.yaml"
    config.write_text(text.replace("@MODEL@", str(embedded.model_dir)).replace(
        "@DATA@/tinystories.jsonl", str(stories)).replace("@DATA@", str(hub_data["imdb"].parent)))
    args = parse_args(SFT, ["--config", str(config)])[0]
    assert [e.get("config") for e in args.dataset_mixture] == ["plain_text", None, None]
    data = load_instructions(args)
    # fraction: shares 0.5/0.25/0.25 of one mixture as large as it can be without oversampling any data set:
    # imdb test has 20 rows -> N = 20 / 0.25 = 80 -> the first 40, 20 and 20 rows
    assert [(m["rows"], m["used"]) for m in data.report.mixture] == [(120, 40), (100, 20), (20, 20)]
    assert data.report.rows == {"train": 60, "test": 20} and data.report.format == "mixture"


def test_instructkits_own_list_form_keeps_working(tmp_path):
    rows = [{"instruction": f"Echo {i}", "output": str(i)} for i in range(10)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"q": r["instruction"], "a": r["output"]}) + "\n"
                                              for r in rows))
    args = parsed(tmp_path, "dataset_mixture:\n  - path: a.jsonl\n    weight: 2\n  - path: b.jsonl\n"
                            "    columns: {q: instruction, a: output}\ntest_split_size: 0.1\n")
    data = load_instructions(args)
    assert [(m["rows"], m["used"]) for m in data.report.mixture] == [(10, 20), (10, 10)]


@pytest.mark.parametrize("entry, message", [
    ("    - id: x\n      wieght: 1.0\n", "unknown key 'wieght' in dataset_mixture entry 1 (x) in"),
    ("    - id: x\n      colums: [a]\n", "did you mean 'columns'?"),
    ("    - id: x\n      weight: -1\n", "-1 is not a positive number"),
    ("    - id: x\n      weight: 1\n      fraction: 0.5\n", "sets both weight"),
    ("    - split: train\n", "dataset_mixture entry 1 in"),
    ("    - id: x\n      columns: messages\n", "write a list of the columns to keep"),
])
def test_bad_entries_are_config_problems_naming_file_and_entry(tmp_path, entry, message):
    with pytest.raises(InstructkitError) as info:
        parsed(tmp_path, handbook(entry))
    assert message in str(info.value) and str(tmp_path / "c.yaml") in str(info.value)


def test_trl_fractions_all_or_none_and_no_streaming(tmp_path):
    with pytest.raises(InstructkitError) as info:
        parsed(tmp_path, "datasets:\n  - path: a\n    fraction: 0.5\n  - path: b\nstreaming: true\n")
    assert "'fraction' is set for some entries but not all" in str(info.value)
    assert "a mixture is not streamed" in str(info.value)


def test_both_test_split_sizes_set_differently(tmp_path):
    with pytest.raises(InstructkitError, match="sets test_split_size twice"):
        parsed(tmp_path, handbook("    - id: x\n", "  test_split_size: 10\ntest_split_size: 0.1\n"))


def test_the_command_line_overrides_the_handbooks_test_split_size(tmp_path):
    assert parsed(tmp_path, handbook("    - id: x\n", "  test_split_size: 1000\n"),
                  "--test_split_size", "0.1").test_split_size == 0.1


def test_a_columns_entry_naming_a_missing_column(tmp_path, hub_data):
    args = parsed(tmp_path, handbook(f"    - id: {hub_data['ultrachat']}\n      split: test_sft\n"
                                     "      columns: [messages, text]\n"))
    with pytest.raises(InstructkitError) as info:
        load_instructions(args)
    assert (f"dataset_mixture entry 1 ({hub_data['ultrachat']}): columns names 'text', which split 'test_sft' does "
            "not have (it has: prompt, prompt_id, messages)") in str(info.value)


def test_a_count_larger_than_the_data(tmp_path, hub_data):
    args = parsed(tmp_path, handbook(f"    - id: {hub_data['ultrachat']}\n      split: test_sft\n",
                                     "  test_split_size: 1000\n"))
    with pytest.raises(InstructkitError, match="test_split_size 1000 holds out 1000 rows, but the mixture has 100"):
        load_instructions(args)


def test_a_bad_row_in_a_mixture_shard_names_its_file_and_row(tmp_path):
    from datasets import Dataset

    folder = tmp_path / "snap" / "data"
    folder.mkdir(parents=True)
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(6)]
    rows[4]["messages"][1]["role"] = "assistent"
    Dataset.from_list(rows[:3]).to_parquet(str(folder / "train-00000-of-00002.parquet"))
    Dataset.from_list(rows[3:]).to_parquet(str(folder / "train-00001-of-00002.parquet"))
    args = parsed(tmp_path, handbook(f"    - id: {Path(folder).parent}\n      split: train\n"))
    with pytest.raises(InstructkitError) as info:
        load_instructions(args)
    assert f"{folder}/train-00001-of-00002.parquet row 2: field 'messages[1].role' unknown role" in str(info.value)


# --- streaming preparation chooses the rows the in-memory preparation chose: the same seeded
# held-out split, the same mixture weights and shuffle, for the same seed, in one data set and in mixtures. The
# digests are of the rows that preparation chose at 59c27f5, before it streamed (each row's instruction, in order).

def write_rows(path, n, name, bad_every=0):
    with open(path, "w") as f:
        for i in range(n):
            output = "" if bad_every and i % bad_every == 3 else f"{name} answer {i}"
            f.write(json.dumps({"instruction": f"{name} {i}", "output": output}) + "\n")


def chosen(data) -> dict:
    """The digest of each split's rows, in order (what the seeded selections chose)."""
    def instruction(row):
        if "prompt" in row:
            return row["prompt"][-1]["content"]
        return next(m["content"] for m in row["messages"] if m["role"] == "user")
    return {name: hashlib.sha256(json.dumps([instruction(r) for r in split]).encode()).hexdigest()[:16]
            for name, split in data.splits.items()}


CASES = {
    "held-out share": ("dataset_name: a.jsonl\ntest_split_size: 0.1\n", ()),
    "held-out count, another seed": ("dataset_name: a.jsonl\ntest_split_size: 37\n", ("--seed", "7")),
    "bad rows skipped": ("dataset_name: bad.jsonl\ntest_split_size: 0.2\non_bad_rows: skip\n", ()),
    "mixture weights": ("dataset_mixture:\n  - path: a.jsonl\n    weight: 1.7\n  - path: b.jsonl\n    weight: 0.4\n"
                        "  - path: bad.jsonl\n    weight: 0.5\ntest_split_size: 0.1\non_bad_rows: skip\n", ()),
    "handbook mixture seed": ("dataset_mixture:\n  datasets:\n    - id: a.jsonl\n      weight: 0.3\n"
                              "    - id: b.jsonl\n      weight: 2.5\n  test_split_size: 25\n  seed: 11\n", ()),
    "trl fractions": ("datasets:\n  - path: a.jsonl\n    fraction: 0.75\n  - path: b.jsonl\n    fraction: 0.25\n"
                      "test_split_size: 0.05\n", ()),
    "entries' own test splits": ("dataset_mixture:\n  - path: d\n    weight: 0.6\n  - path: a.jsonl\n"
                                 "test_split_size: 0\n", ()),
}
BEFORE = {
    "held-out share": {"train": "854fbac0d64497ba", "test": "f35200a25f4beb33"},
    "held-out count, another seed": {"train": "4617d2f5e7869669", "test": "25d13a05667a6d28"},
    "bad rows skipped": {"train": "c9b079a865b2bdfc", "test": "5c09a4ce2702a0a9"},
    "mixture weights": {"train": "daaba7e2e8bf8074", "test": "41dc42d737b3f2dd"},
    "handbook mixture seed": {"train": "23682e7aa2898fd3", "test": "151440d64766b4be"},
    "trl fractions": {"train": "248e060ab7fe583e", "test": "911d10330c587409"},
    "entries' own test splits": {"train": "12fcfe14c6080d70", "test": "d51f0434ecd47d35"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_streaming_preparation_chooses_the_rows_it_chose_before(tmp_path, case):
    write_rows(tmp_path / "a.jsonl", 1000, "alpha")
    write_rows(tmp_path / "b.jsonl", 300, "beta")
    write_rows(tmp_path / "bad.jsonl", 200, "gamma", bad_every=7)
    (tmp_path / "d").mkdir()
    write_rows(tmp_path / "d" / "train.jsonl", 120, "delta")
    write_rows(tmp_path / "d" / "test.jsonl", 30, "delta test")
    text, args = CASES[case]
    assert chosen(load_instructions(parsed(tmp_path, text, *args))) == BEFORE[case]
