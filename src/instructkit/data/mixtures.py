"""Several data sets mixed into one training set, each read, validated and converted on its own, then weighted."""

from __future__ import annotations

import random

from instructkit.data.formats import convert_records, detect_format, form_of, is_conversational
from instructkit.data.kinds import DataKind
from instructkit.data.report import DataReport
from instructkit.data.sources import Record, read_source
from instructkit.data.splits import split_by_size
from instructkit.data.storage import to_datasets
from instructkit.errors import InstructkitError, close_match

MIXTURE_KEYS = ("path", "split", "config", "format", "columns", "weight")


def load_mixture(args, seed: int, kind: DataKind):
    """Every data set of `dataset_mixture` read, validated and converted on its own, weighted, then mixed."""
    report = DataReport(format="mixture")
    rng = random.Random(seed)
    mixed: list[dict] = []
    for i, entry in enumerate(args.dataset_mixture, 1):
        where = f"dataset_mixture entry {i}"
        if not isinstance(entry, dict) or not entry.get("path"):
            raise InstructkitError(f"{where} has no path.", fix="write each entry as {path: ..., weight: ...}.")
        for key in entry:
            if key not in MIXTURE_KEYS:
                near = close_match(key, MIXTURE_KEYS)
                raise InstructkitError(f"{where} ({entry['path']}): unknown key {key!r}"
                                       + (f" — did you mean {near!r}?" if near else "."),
                                       fix=f"use only: {', '.join(MIXTURE_KEYS)}.")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise InstructkitError(f"{where} ({entry['path']}): weight {weight!r} is not a positive number.",
                                   fix="weight is how often each row is used on average: 1.0 = all rows once.")
        splits = read_source(str(entry["path"]), entry.get("config"), kind, args.csv_delimiter)
        split = entry.get("split", "train")
        if split not in splits:
            raise InstructkitError(f"{where}: {entry['path']} has no split {split!r} (it has: {', '.join(splits)}).",
                                   fix="set split to one of those.")
        records = _renamed(splits[split], entry.get("columns") or {}, where)
        fmt = detect_format(records, entry.get("format", "auto"))
        rows = convert_records(records, fmt, args.on_bad_rows, report)
        used = _weighted(rows, float(weight), rng)
        report.mixture.append({"path": str(entry["path"]), "format": fmt, "rows": len(records), "used": len(used),
                               "weight": weight})
        report.mixture[-1]["conversational"] = not used or is_conversational(used[0])
        mixed.extend(used)
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
    if {form_of(r) for r in mixed} == {"messages", "prompt_completion"}:  # one form for TRL: conversations
        mixed = [{"messages": r["prompt"] + r["completion"], **({"task": r["task"]} if "task" in r else {})}
                 if "completion" in r else r for r in mixed]
    rng.shuffle(mixed)
    train, test = split_by_size(mixed, args.test_split_size, seed) if args.test_split_size > 0 else (mixed, [])
    return to_datasets({"train": train, **({"test": test} if test else {})}, report)


def _renamed(records: list[Record], columns: dict, where: str) -> list[Record]:
    if not isinstance(columns, dict):
        raise InstructkitError(f"{where}: columns must map their column names to ours.",
                               fix="write columns: {question: instruction, answer: output}.")
    if not columns:
        return records
    return [Record(r.source, r.row, {columns.get(k, k): v for k, v in r.data.items()}) for r in records]


def _weighted(rows: list[dict], weight: float, rng: random.Random) -> list[dict]:
    """Every row floor(weight) times, plus a seeded sample of the fractional part: round(weight * len(rows)) rows."""
    whole, frac = int(weight), weight - int(weight)
    extra = rng.sample(range(len(rows)), round(frac * len(rows))) if rows else []
    return rows * whole + [rows[i] for i in sorted(extra)]
