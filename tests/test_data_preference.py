"""Preference (DPO) data: every form in, validated per row, the embedded pairs honest."""

import json

import pytest

from instructkit.config.arguments import InstructkitArguments
from instructkit.data.formats import RowProblem, convert_row
from instructkit.data.loading import load_instructions, load_preferences
from instructkit.data.splits import exact_match_rows
from instructkit.errors import InstructkitError

USER = [{"role": "user", "content": "Add 1 and 2."}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_string_pairs_keep_their_prompt():
    row = convert_row({"prompt": "1+2=", "chosen": "3", "rejected": "4"}, "preference")
    assert row == {"prompt": "1+2=", "chosen": "3", "rejected": "4"}


def test_conversational_pairs_and_string_answers_to_a_message_prompt():
    conv = convert_row({"prompt": USER, "chosen": [{"role": "assistant", "content": "3"}],
                             "rejected": [{"role": "assistant", "content": "4"}]}, "preference")
    assert conv == {"prompt": USER, "chosen": [{"role": "assistant", "content": "3"}],
                    "rejected": [{"role": "assistant", "content": "4"}]}
    mixed = convert_row({"prompt": USER, "chosen": "3", "rejected": "4"}, "preference")
    assert mixed == conv


def test_implicit_prompt_is_the_shared_start_of_both_conversations():
    row = convert_row({"chosen": USER + [{"role": "assistant", "content": "3"}],
                            "rejected": USER + [{"role": "assistant", "content": "4"}]}, "preference")
    assert row["prompt"] == USER
    assert row["chosen"] == [{"role": "assistant", "content": "3"}]
    strings = convert_row({"chosen": "Q: 1+2? A: 3", "rejected": "Q: 1+2? A: 4"}, "preference")
    assert strings["prompt"] == "Q: 1+2? A:" and strings["chosen"] == " 3"  # TRL keeps the space with the answer


@pytest.mark.parametrize("row, field, problem", [
    ({"prompt": "p", "chosen": "a", "rejected": "a"}, "rejected", "is the same as 'chosen'"),
    ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "chosen", "is empty"),
    ({"chosen": "abc", "rejected": "xyz"}, "prompt", "share no opening text"),
    ({"prompt": USER, "chosen": [{"role": "user", "content": "3"}], "rejected": "4"}, "chosen", "has no assistant turn"),
    ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "3"}],
      "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "4"}]}, "prompt", "same turns"),
])
def test_bad_pairs_are_named_with_field_and_problem(row, field, problem):
    with pytest.raises(RowProblem) as err:
        convert_row(row, "preference")
    assert err.value.field_name.startswith(field) and problem in err.value.problem


def test_bad_pair_is_reported_by_file_and_row(tmp_path):
    rows = [{"prompt": "p", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(10)]
    rows[6]["rejected"] = rows[6]["chosen"]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(InstructkitError) as err:
        load_preferences(InstructkitArguments(dataset_name=str(path)), seed=0)
    assert f"{path} row 7: field 'rejected' is the same as 'chosen'" in str(err.value)


def test_a_recipe_refuses_data_of_the_other_kind(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 4)
    with pytest.raises(InstructkitError, match="use recipes/dpo.py"):
        load_instructions(InstructkitArguments(dataset_name=str(pairs)), seed=0)
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "i", "output": "o"}] * 4)
    with pytest.raises(InstructkitError, match="preference pairs"):
        load_preferences(InstructkitArguments(dataset_name=str(sft)), seed=0)


def test_embedded_preference_pairs_are_right_vs_plausibly_wrong(embedded):
    ds, report = load_preferences(InstructkitArguments(), seed=0)
    assert report.format == "preference" and report.conversational
    assert set(ds) == {"train", "test"} and len(ds["test"]) > 0
    train_prompts = {r["prompt"][0]["content"] for r in ds["train"]}
    assert not train_prompts & {r["prompt"][0]["content"] for r in ds["test"]}  # held-out arguments
    for row in ds["train"]:
        assert row["chosen"] != row["rejected"]
    # the chosen answers are the SFT data's answers: the same world
    sft, _ = load_instructions(InstructkitArguments(), seed=0)
    assert {r["task"] for r in ds["train"]} == {r["task"] for r in sft["train"]}


def test_preference_rows_give_exact_match_targets():
    ds = __import__("datasets").Dataset.from_list([{"prompt": USER, "chosen": [{"role": "assistant", "content": "3"}],
                                                    "rejected": [{"role": "assistant", "content": "4"}]}])
    assert exact_match_rows(ds, 5) == [{"prompt": USER, "target": "3", "task": "all"}]
