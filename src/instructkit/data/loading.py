"""The data set a recipe trains on: one source or a mixture, validated, split, on disk."""

from __future__ import annotations

from dataclasses import dataclass

from instructkit.data.formats import convert_records, detect_format
from instructkit.data.kinds import INSTRUCTIONS, PREFERENCES, DataKind
from instructkit.data.mixtures import load_mixture
from instructkit.data.report import DataReport
from instructkit.data.sources import read_source
from instructkit.data.splits import split_by_size
from instructkit.data.storage import to_datasets
from instructkit.errors import InstructkitError


@dataclass(frozen=True)
class TrainingData:
    """The validated rows in TRL's forms: `splits` (a DatasetDict: `train` plus held-out splits such as `test`) and
    the `report` of what happened to them."""

    splits: object
    report: DataReport

    def __iter__(self):  # splits, report = load_instructions(...)
        return iter((self.splits, self.report))

    @property
    def train(self):
        return self.splits["train"]

    @property
    def held_out(self) -> dict:
        """Every split but `train`, by name (exact match is measured on each)."""
        return {name: split for name, split in self.splits.items() if name != "train"}

    @property
    def test(self):
        """The first held-out split (the trainer's eval data set), or None."""
        return next(iter(self.held_out.values()), None)


def load_instructions(args, seed: int = 42) -> TrainingData:
    """Instruction data: `train` and held-out split(s). `args`: InstructkitArguments."""
    return load_data(args, seed, INSTRUCTIONS)


def load_preferences(args, seed: int = 42) -> TrainingData:
    """Preference (DPO) data: prompt / chosen / rejected rows."""
    return load_data(args, seed, PREFERENCES)


def load_data(args, seed: int, kind: DataKind) -> TrainingData:
    if args.dataset_mixture:
        return TrainingData(*load_mixture(args, seed, kind))
    train_name, test_name = args.dataset_train_split, args.dataset_test_split
    splits = read_source(args.dataset_name, args.dataset_config, kind, splits=(train_name, test_name))
    if train_name not in splits:
        raise InstructkitError(f"dataset {args.dataset_name} has no split {train_name!r} (it has: {', '.join(splits)}).",
                               fix="set dataset_train_split to one of those.")
    report = DataReport(format=detect_format(splits[train_name], args.dataset_format))
    if report.format not in kind.formats:
        where = splits[train_name][0].source if splits[train_name] else args.dataset_name
        raise InstructkitError(f"{where}: {report.format} data, but this recipe trains on {kind.name}.",
                               fix="use recipes/dpo.py for prompt/chosen/rejected data, an SFT recipe for "
                                   "instruction data (or set dataset_format if the detection is wrong).")
    converted = {name: convert_records(records, report.format, args.on_bad_rows, report)
                 for name, records in splits.items()}
    if not converted[train_name]:
        reasons = ", ".join(f"{r}: {n}" for r, n in report.skipped.most_common())
        raise InstructkitError(f"dataset {args.dataset_name}: no training rows left: "
                               + (f"every row of split {train_name!r} was skipped as invalid ({reasons})."
                                  if reasons else f"split {train_name!r} is empty."),
                               fix="correct the rows (on_bad_rows: error lists them with their row numbers).")
    out = {"train": converted[train_name]}
    held_out = {k: v for k, v in converted.items() if k != train_name}
    if test_name in held_out:
        out["test"] = held_out.pop(test_name)
        out.update(held_out)  # e.g. the embedded test_phrasings split
    elif args.test_split_size > 0:
        out["train"], test = split_by_size(out["train"], args.test_split_size, seed, f"dataset {args.dataset_name}")
        if test:
            out["test"] = test
    return TrainingData(*to_datasets(out, report))
