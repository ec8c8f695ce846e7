"""Several data sets mixed into one training set, each read, validated and converted on its own, then weighted.

The mixture's entries arrive in instructkit's form (`config.mixtures` reads the alignment-handbook's and TRL's forms
into it, checked with the rest of the config): `{path, config, split, data_dir, data_files, format, columns,
weight | fraction}`. Each entry is read like `dataset_name` (`data.sources`: files, folders, hub-layout folders,
hub names), its `columns` kept (a list) or renamed (a mapping), its rows validated with their file and row, then
sampled: `weight` is the share of its own rows used (a seeded sample; above 1 rows repeat), `fraction` TRL's share
of the mixture (normalised; the mixture is as large as it can be with no data set oversampled; the first rows of
each). The mixed rows are shuffled and `test_split_size` of them held out, both with the mixture's seed; with
`test_split_size: 0` the entries' own other splits (e.g. the embedded default's `test` and `test_phrasings`) are the
held-out data.

Plain text data sets (a `.txt` corpus, text rows) may be mixed with conversations (general-text replay against
forgetting): text rows then train on every token, conversation rows on their assistant turns, and instructkit
tokenizes both itself (`data.masks`), since TRL takes one form per data set.
"""

from __future__ import annotations

import random

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from instructkit.config.mixtures import read_mixtures
from instructkit.data.formats import convert_stream
from instructkit.data.kinds import DataKind
from instructkit.data.report import DataReport, check_rows_left
from instructkit.data.sources import Record, open_source
from instructkit.data.splits import split_by_size
from instructkit.data.staging import Stage
from instructkit.data.storage import cache_folder, to_datasets
from instructkit.errors import InstructkitError

FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt", "text", "preference")


def load_mixture(args, seed: int, kind: DataKind, exclude=None):
    """Every data set of `dataset_mixture` read, validated and converted on its own (`exclude`: see
    `data.loading.load_instructions`; before weighting, so a left-out row is gone from every repeat), weighted,
    then mixed. Rows are chosen as indices of the staged rows (`data.staging`)."""
    entries = _entries(args.dataset_mixture)
    seed = args.dataset_mixture_seed if getattr(args, "dataset_mixture_seed", None) is not None else seed
    report = DataReport(format="mixture")
    rng = random.Random(seed)
    with Stage(cache_folder()) as stage:
        held_out: dict[str, list[int]] = {}
        parts = [_entry_rows(entry, f"dataset_mixture entry {i} ({entry['path']})", args, kind, report, exclude,
                             stage, held_out) for i, entry in enumerate(entries, 1)]
        counts = _fraction_counts([(part.entry.get("fraction"), len(part.rows)) for part in parts])
        mixed: list[int] = []
        for part, count in zip(parts, counts):
            used = part.rows[:count] if count is not None else _weighted(part.rows, float(part.entry.get("weight", 1.0)),
                                                                         rng)
            report.mixture.append(part.reported(used, stage))
            mixed.extend(used)
        _check_mixed(report, kind)
        forms = stage.summary(mixed).forms
        check_rows_left(mixed, report, "dataset_mixture", "every data set")
        rng.shuffle(mixed)
        choices, of_mixed = {"train": mixed, **held_out}, ("train",)
        if args.test_split_size > 0:
            train, test = split_by_size(mixed, args.test_split_size, seed, "the mixture")
            choices, of_mixed = {"train": train, **({"test": test} if test else {})}, ("train", "test")
        # one form for the mixed conversations: message lists (the entries' own held-out splits stay as they are)
        messages = of_mixed if "prompt_completion" in forms and len(forms) > 1 else ()
        return to_datasets(stage, choices, report, messages)


@dataclass(frozen=True)
class _Part:
    """One entry's staged rows (indices) and what the report says of it."""

    entry: dict
    format: str
    read: int
    rows: list[int]
    dropped: list[str]

    def reported(self, used: list[int], stage: Stage) -> dict:
        entry = self.entry
        share = {"fraction": entry["fraction"]} if "fraction" in entry else {"weight": entry.get("weight", 1.0)}
        return {"path": entry["path"], "split": entry.get("split", "train"), "format": self.format, "rows": self.read,
                "used": len(used), **share, **({"dropped_columns": self.dropped} if self.dropped else {}),
                "conversational": not used or stage.summary(used[:1]).conversational}


def _entries(mixture) -> list[dict]:
    """The entries in instructkit's form, checked (a mixture may come from code, not through the config parser)."""
    config, problems = read_mixtures({"dataset_mixture": mixture}, "the config", FORMATS)
    if problems:
        raise InstructkitError("; ".join(problems) + ".", fix="correct the mixture entry named above.")
    return config["dataset_mixture"]


def _entry_rows(entry: dict, where: str, args, kind: DataKind, report: DataReport, exclude, stage: Stage,
                held_out: dict) -> _Part:
    """One entry's split read, its columns kept or renamed, validated and converted into the stage; its other
    splits likewise into `held_out` when test_split_size is 0 (the entries' own held-out data)."""
    split, columns = entry.get("split", "train"), entry.get("columns")
    splits = open_source(entry["path"], entry.get("config"), kind, splits=(split,), data_dir=entry.get("data_dir"),
                         data_files=entry.get("data_files"), where=where,
                         csv_delimiter=getattr(args, "csv_delimiter", None))
    if split not in splits:
        raise InstructkitError(f"{where}: {entry['path']} has no split {split!r} (it has: {', '.join(splits)}).",
                               fix="set split to one of those.")
    present: dict[str, None] = {}
    conversion = convert_stream(_columns(splits[split], columns, present), entry.get("format", "auto"),
                                args.on_bad_rows, report, stage, exclude,
                                after_read=lambda: _check_kept(columns, present, where, split))
    for name, records in (splits.items() if args.test_split_size <= 0 else ()):
        if name != split:
            held_out.setdefault(name, []).extend(
                convert_stream(_columns(records, columns), conversion.format, args.on_bad_rows, report, stage).rows)
    dropped = [c for c in present if c not in set(columns)] if isinstance(columns, list) else []
    return _Part(entry, conversion.format, conversion.read, list(conversion.rows), dropped)


def _check_kept(columns, present: dict, where: str, split: str) -> None:
    """A keep-list names only columns the split has (seen in every record as it was read)."""
    missing = [c for c in columns if c not in present] if isinstance(columns, list) and columns else []
    if missing:
        raise InstructkitError(f"{where}: columns names {', '.join(map(repr, missing))}, which split {split!r} does "
                               f"not have (it has: {', '.join(present)}).",
                               fix="list only columns the data has (columns: keeps exactly those), or leave columns "
                                   "out to keep them all.")


def _columns(records: Iterable[Record], columns, present: dict | None = None) -> Iterator[Record]:
    """`columns` as a mapping renames, as a list keeps exactly those, absent keeps all; `present` collects the
    columns the records had."""
    keep = set(columns) if isinstance(columns, list) else None
    for r in records:
        if present is not None and keep:
            present.update(dict.fromkeys(map(str, r.data)))
        if not columns:
            yield r
        elif keep is None:
            yield Record(r.source, r.row, {columns.get(k, k): v for k, v in r.data.items()})
        else:
            yield Record(r.source, r.row, {k: v for k, v in r.data.items() if k in keep})


def _fraction_counts(entries: list[tuple[float | None, int]]) -> list[int | None]:
    """TRL's `fraction`: shares normalised to one; the mixture is the largest size N with no data set oversampled
    (N = min(rows_i / share_i)); each keeps its first round(share_i * N) rows. None where fractions are not used."""
    if not entries or entries[0][0] is None:
        return [None] * len(entries)
    total = sum(f for f, _ in entries)
    shares = [f / total for f, _ in entries]
    size = min(n / w for (_, n), w in zip(entries, shares) if w > 0)
    return [min(n, round(w * size)) for (_, n), w in zip(entries, shares)]


def _check_mixed(report: DataReport, kind: DataKind) -> None:
    strings = [m["path"] for m in report.mixture if not m["conversational"] and m["format"] != "text"]
    if strings and len(strings) < len(report.mixture):
        raise InstructkitError(f"dataset_mixture: {', '.join(strings)} hold plain-string prompt/completion rows, "
                               "which cannot be mixed with conversations (message lists rendered by the chat "
                               "template).", fix="mix conversational data sets and plain text only (alpaca, "
                                                 "messages, ShareGPT, message-list prompt/completion, text), or "
                                                 "train on the string data alone.")
    wrong = [m["path"] for m in report.mixture if m["format"] not in kind.formats]
    if wrong:
        raise InstructkitError(f"dataset_mixture: {', '.join(wrong)} hold data of another kind than this recipe trains "
                               f"on ({kind.name}).", fix="mix preference data sets for recipes/dpo.py, instruction "
                                                         "data sets for the SFT recipes.")


def _weighted(rows: list[int], weight: float, rng: random.Random) -> list[int]:
    """Every row floor(weight) times, plus a seeded sample of the fractional part: round(weight * len(rows)) rows."""
    whole, frac = int(weight), weight - int(weight)
    extra = rng.sample(range(len(rows)), round(frac * len(rows))) if rows else []
    return rows * whole + [rows[i] for i in sorted(extra)]
