"""The data set a recipe trains on: one source or a mixture, validated, split, on disk."""

from __future__ import annotations

from dataclasses import dataclass

from instructkit.data.formats import convert_stream
from instructkit.data.kinds import INSTRUCTIONS, PREFERENCES, DataKind
from instructkit.data.mixtures import load_mixture
from instructkit.data.report import DataReport, check_rows_left
from instructkit.data.sources import open_source
from instructkit.data.splits import split_by_size
from instructkit.data.staging import Stage
from instructkit.data.storage import cache_folder, to_datasets
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


def load_instructions(args, seed: int = 42, exclude=None) -> TrainingData:
    """Instruction data: `train` and held-out split(s). `args`: InstructkitArguments. `exclude`: a callable on each
    valid training record (`data.sources.Record`: file, row, fields) saying to leave it out, applied before the
    rows are split and written to disk; what it leaves out is listed in the report (file:row)."""
    return load_data(args, seed, INSTRUCTIONS, exclude)


def load_preferences(args, seed: int = 42, exclude=None) -> TrainingData:
    """Preference (DPO) data: prompt / chosen / rejected rows (`exclude` as for `load_instructions`)."""
    return load_data(args, seed, PREFERENCES, exclude)


def load_data(args, seed: int, kind: DataKind, exclude=None) -> TrainingData:
    if args.dataset_mixture:
        return TrainingData(*load_mixture(args, seed, kind, exclude))
    train_name, test_name = args.dataset_train_split, args.dataset_test_split
    splits = open_source(args.dataset_name, args.dataset_config, kind, splits=(train_name, test_name),
                        csv_delimiter=args.csv_delimiter)
    if train_name not in splits:
        raise InstructkitError(f"dataset {args.dataset_name} has no split {train_name!r} (it has: {', '.join(splits)}).",
                               fix="set dataset_train_split to one of those.")
    report = DataReport()

    def check_kind(fmt: str, first_source: str | None) -> None:
        if fmt not in kind.formats:
            raise InstructkitError(f"{first_source or args.dataset_name}: {fmt} data, but this recipe trains on "
                                   f"{kind.name}.", fix="use recipes/dpo.py for prompt/chosen/rejected data, an SFT "
                                                        "recipe for instruction data (or set dataset_format if the "
                                                        "detection is wrong).")

    with Stage(cache_folder()) as stage:
        train = convert_stream(splits[train_name], args.dataset_format, args.on_bad_rows, report, stage, exclude,
                               check_kind)
        report.format = train.format
        converted = {name: train.rows if name == train_name else
                     convert_stream(records, report.format, args.on_bad_rows, report, stage).rows
                     for name, records in splits.items()}
        check_rows_left(converted[train_name], report, f"dataset {args.dataset_name}", f"split {train_name!r}")
        return TrainingData(*to_datasets(stage, _held_out(converted, args, seed), report))


def _held_out(converted: dict, args, seed: int) -> dict:
    """`train`, then `test`: the data's test split, else a seeded share of the training rows; its other splits."""
    train_name, test_name = args.dataset_train_split, args.dataset_test_split
    out = {"train": converted[train_name]}
    held_out = {k: v for k, v in converted.items() if k != train_name}
    if test_name in held_out:
        out["test"] = held_out.pop(test_name)
        out.update(held_out)  # e.g. the embedded test_phrasings split
    elif args.test_split_size > 0:
        out["train"], test = split_by_size(out["train"], args.test_split_size, seed, f"dataset {args.dataset_name}")
        if test:
            out["test"] = test
    return out
