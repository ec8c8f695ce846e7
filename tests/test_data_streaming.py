"""Streaming preparation (data.staging) chooses the rows the in-memory preparation chose: the same seeded held-out
split, the same mixture weights and shuffle, for the same seed. The digests below are of the rows that preparation
chose at 59c27f5, before it streamed (each row's `instruction`, in order, per split)."""

import hashlib
import json

import pytest

from instructkit.config.arguments import InstructkitArguments
from instructkit.config.parsing import parse_args
from instructkit.data.loading import load_instructions

trl = pytest.importorskip("trl")
SFT = (InstructkitArguments, trl.SFTConfig, trl.ModelConfig)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


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


def load(tmp_path, text, *args):
    (tmp_path / "c.yaml").write_text(text)
    return load_instructions(parse_args(SFT, ["--config", str(tmp_path / "c.yaml"), *args])[0])


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
    assert chosen(load(tmp_path, text, *args)) == BEFORE[case]
