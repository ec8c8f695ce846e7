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

from instructkit.config.mixtures import read_mixtures
from instructkit.data.formats import convert_records, detect_format, form_of, is_conversational
from instructkit.data.kinds import DataKind
from instructkit.data.report import DataReport, check_rows_left
from instructkit.data.sources import Record, read_source
from instructkit.data.splits import split_by_size
from instructkit.data.storage import to_datasets
from instructkit.errors import InstructkitError

FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt", "text", "preference")


def load_mixture(args, seed: int, kind: DataKind, exclude=None):
    """Every data set of `dataset_mixture` read, validated and converted on its own (`exclude`: see
    `data.loading.load_instructions`; before weighting, so a left-out row is gone from every repeat), weighted,
    then mixed."""
    entries = _entries(args.dataset_mixture)
    seed = args.dataset_mixture_seed if getattr(args, "dataset_mixture_seed", None) is not None else seed
    report = DataReport(format="mixture")
    rng = random.Random(seed)
    parts, held_out = [], {}
    for i, entry in enumerate(entries, 1):
        where = f"dataset_mixture entry {i} ({entry['path']})"
        records, dropped, others = _entry_records(entry, kind, where, getattr(args, "csv_delimiter", None))
        fmt = detect_format(records, entry.get("format", "auto"))
        parts.append((entry, fmt, len(records), convert_records(records, fmt, args.on_bad_rows, report, exclude),
                      dropped))
        for name, split_records in (others.items() if args.test_split_size <= 0 else ()):
            held_out.setdefault(name, []).extend(convert_records(split_records, fmt, args.on_bad_rows, report))
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
    forms = {form_of(r) for r in mixed}
    if "prompt_completion" in forms and len(forms) > 1:  # one form for conversations: message lists
        mixed = [{"messages": r["prompt"] + r["completion"],
                  **{k: r[k] for k in ("task", "chat_template_kwargs") if k in r}}
                 if "completion" in r else r for r in mixed]
    check_rows_left(mixed, report, "dataset_mixture", "every data set")
    rng.shuffle(mixed)
    if args.test_split_size > 0:
        train, test = split_by_size(mixed, args.test_split_size, seed, "the mixture")
        return to_datasets({"train": train, **({"test": test} if test else {})}, report)
    return to_datasets({"train": mixed, **held_out}, report)


def _entries(mixture) -> list[dict]:
    """The entries in instructkit's form, checked (a mixture may come from code, not through the config parser)."""
    config, problems = read_mixtures({"dataset_mixture": mixture}, "the config", FORMATS)
    if problems:
        raise InstructkitError("; ".join(problems) + ".", fix="correct the mixture entry named above.")
    return config["dataset_mixture"]


def _entry_records(entry: dict, kind: DataKind, where: str, csv_delimiter: str | None = None):
    """The records of one entry's split, with its columns kept or renamed; the columns dropped by a keep-list; the
    records of the other splits read with it (held-out data when test_split_size is 0), columns treated alike."""
    split = entry.get("split", "train")
    splits = read_source(entry["path"], entry.get("config"), kind, splits=(split,), data_dir=entry.get("data_dir"),
                         data_files=entry.get("data_files"), where=where,
                         csv_delimiter=csv_delimiter)
    if split not in splits:
        raise InstructkitError(f"{where}: {entry['path']} has no split {split!r} (it has: {', '.join(splits)}).",
                               fix="set split to one of those.")
    records, columns = splits[split], entry.get("columns")
    others = {name: rows for name, rows in splits.items() if name != split}
    if not columns or isinstance(columns, dict):
        return _columns(records, columns), [], {name: _columns(rows, columns) for name, rows in others.items()}
    present = list(dict.fromkeys(str(k) for r in records for k in r.data))
    missing = [c for c in columns if c not in present]
    if missing:
        raise InstructkitError(f"{where}: columns names {', '.join(map(repr, missing))}, which split {split!r} does "
                               f"not have (it has: {', '.join(present)}).",
                               fix="list only columns the data has (columns: keeps exactly those), or leave columns "
                                   "out to keep them all.")
    return (_columns(records, columns), [c for c in present if c not in set(columns)],
            {name: _columns(rows, columns) for name, rows in others.items()})


def _columns(records: list[Record], columns) -> list[Record]:
    """`columns` as a mapping renames, as a list keeps exactly those, absent keeps all."""
    if not columns:
        return records
    if isinstance(columns, dict):
        return [Record(r.source, r.row, {columns.get(k, k): v for k, v in r.data.items()}) for r in records]
    keep = set(columns)
    return [Record(r.source, r.row, {k: v for k, v in r.data.items() if k in keep}) for r in records]


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


def _weighted(rows: list[dict], weight: float, rng: random.Random) -> list[dict]:
    """Every row floor(weight) times, plus a seeded sample of the fractional part: round(weight * len(rows)) rows."""
    whole, frac = int(weight), weight - int(weight)
    extra = rng.sample(range(len(rows)), round(frac * len(rows))) if rows else []
    return rows * whole + [rows[i] for i in sorted(extra)]
