"""Several data sets mixed into one training set, each read, validated and converted on its own, then weighted.

The mixture's entries arrive in instructkit's form (`config.mixtures` reads the alignment-handbook's and TRL's forms
into it, checked with the rest of the config): `{path, config, split, data_dir, data_files, format, columns,
weight | fraction}`. Each entry is read like `dataset_name` (`data.sources`: files, folders, hub-layout folders,
hub names), its `columns` kept (a list) or renamed (a mapping), its rows validated with their file and row, then
sampled: `weight` is the share of its own rows used (a seeded sample; above 1 rows repeat), `fraction` TRL's share
of the mixture (normalised; the mixture is as large as it can be with no data set oversampled; the first rows of
each). The mixed rows are shuffled and `test_split_size` of them held out, both with the mixture's seed.
"""

from __future__ import annotations

import random

from instructkit.config.mixtures import read_mixtures
from instructkit.data.formats import convert_records, detect_format, form_of, is_conversational
from instructkit.data.kinds import DataKind
from instructkit.data.report import DataReport
from instructkit.data.sources import Record, read_source
from instructkit.data.splits import split_by_size
from instructkit.data.storage import to_datasets
from instructkit.errors import InstructkitError

FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt", "text", "preference")


def load_mixture(args, seed: int, kind: DataKind):
    """Every data set of `dataset_mixture` read, validated and converted on its own, sampled, then mixed."""
    entries = _entries(args.dataset_mixture)
    seed = args.dataset_mixture_seed if getattr(args, "dataset_mixture_seed", None) is not None else seed
    report = DataReport(format="mixture")
    rng = random.Random(seed)
    parts = []
    for i, entry in enumerate(entries, 1):
        where = f"dataset_mixture entry {i} ({entry['path']})"
        records, dropped = _entry_records(entry, kind, where)
        fmt = detect_format(records, entry.get("format", "auto"))
        parts.append((entry, fmt, len(records), convert_records(records, fmt, args.on_bad_rows, report), dropped))
    counts = _fraction_counts([(e.get("fraction"), len(rows)) for e, _, _, rows, _ in parts])
    mixed: list[dict] = []
    for (entry, fmt, n_read, rows, dropped), count in zip(parts, counts):
        used = rows[:count] if count is not None else _weighted(rows, float(entry.get("weight", 1.0)), rng)
        share = {"fraction": entry["fraction"]} if "fraction" in entry else {"weight": entry.get("weight", 1.0)}
        report.mixture.append({"path": entry["path"], "split": entry.get("split", "train"), "format": fmt,
                               "rows": n_read, "used": len(used), **share,
                               **({"dropped_columns": dropped} if dropped else {}),
                               "conversational": not used or is_conversational(used[0])})
        mixed.extend(used)
    _check_mixed(report, kind)
    if {form_of(r) for r in mixed} == {"messages", "prompt_completion"}:  # one form for TRL: conversations
        mixed = [{"messages": r["prompt"] + r["completion"],
                  **{k: r[k] for k in ("task", "chat_template_kwargs") if k in r}}
                 if "completion" in r else r for r in mixed]
    rng.shuffle(mixed)
    train, test = (split_by_size(mixed, args.test_split_size, seed, "the mixture") if args.test_split_size > 0
                   else (mixed, []))
    return to_datasets({"train": train, **({"test": test} if test else {})}, report)


def _entries(mixture) -> list[dict]:
    """The entries in instructkit's form; a mixture that did not come through the config parser is checked here."""
    if mixture and all(isinstance(e, dict) and "path" in e for e in mixture) and all(
            set(e) <= {"path", "config", "split", "data_dir", "data_files", "format", "columns", "weight", "fraction"}
            for e in mixture):
        return mixture
    config, problems = read_mixtures({"dataset_mixture": mixture}, "the config", FORMATS)
    if problems:
        raise InstructkitError("; ".join(problems) + ".", fix="correct the mixture entry named above.")
    return config["dataset_mixture"]


def _entry_records(entry: dict, kind: DataKind, where: str) -> tuple[list[Record], list[str]]:
    """The records of one entry's split, with its columns kept or renamed; and the columns dropped by a keep-list."""
    split = entry.get("split", "train")
    splits = read_source(entry["path"], entry.get("config"), kind, splits=(split,), data_dir=entry.get("data_dir"),
                         data_files=entry.get("data_files"), where=where)
    if split not in splits:
        raise InstructkitError(f"{where}: {entry['path']} has no split {split!r} (it has: {', '.join(splits)}).",
                               fix="set split to one of those.")
    records, columns = splits[split], entry.get("columns")
    if isinstance(columns, dict):
        return [Record(r.source, r.row, {columns.get(k, k): v for k, v in r.data.items()}) for r in records], []
    if not columns:
        return records, []
    present = list(dict.fromkeys(str(k) for r in records for k in r.data))
    missing = [c for c in columns if c not in present]
    if missing:
        raise InstructkitError(f"{where}: columns names {', '.join(map(repr, missing))}, which split {split!r} does "
                               f"not have (it has: {', '.join(present)}).",
                               fix="list only columns the data has (columns: keeps exactly those), or leave columns "
                                   "out to keep them all.")
    keep = set(columns)
    return [Record(r.source, r.row, {k: v for k, v in r.data.items() if k in keep}) for r in records], \
        [c for c in present if c not in keep]


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
    strings = [m["path"] for m in report.mixture if not m["conversational"]]
    if strings and len(strings) < len(report.mixture):
        raise InstructkitError(f"dataset_mixture: {', '.join(strings)} hold plain-string rows, which cannot be mixed "
                               "with conversations (message lists rendered by the chat template).",
                               fix="mix conversational data sets only (alpaca, messages, ShareGPT, message-list "
                                   "prompt/completion or preference), or train on the string data alone.")
    wrong = [m["path"] for m in report.mixture if m["format"] not in kind.formats]
    if wrong:
        raise InstructkitError(f"dataset_mixture: {', '.join(wrong)} hold data of another kind than this recipe trains "
                               f"on ({kind.name}).", fix="mix preference data sets for recipes/dpo.py, instruction "
                                                         "data sets for the SFT recipes.")


def _weighted(rows: list[dict], weight: float, rng: random.Random) -> list[dict]:
    """Every row floor(weight) times, plus a seeded sample of the fractional part: round(weight * len(rows)) rows."""
    whole, frac = int(weight), weight - int(weight)
    extra = rng.sample(range(len(rows)), round(frac * len(rows))) if rows else []
    return rows * whole + [rows[i] for i in sorted(extra)]
