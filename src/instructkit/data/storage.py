"""Validated rows on disk: a memory-mapped Arrow data set in the datasets cache, named by its content."""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.data.conversations import has_tools
from instructkit.data.formats import form_of, is_conversational
from instructkit.data.report import DataReport


def to_datasets(out: dict[str, list[dict]], report: DataReport):
    """(DatasetDict of the splits, each on disk; the report with its row counts and the rows' form)."""
    from datasets import DatasetDict

    report.rows = {k: len(v) for k, v in out.items()}
    report.conversational = any(is_conversational(r) for r in out["train"])
    report.form = "+".join(sorted({form_of(r) for r in out["train"]}))  # e.g. messages+text: replay in a mixture
    return DatasetDict({k: on_disk(v) for k, v in out.items()}), report


def on_disk(rows: list[dict]):
    """The converted rows as a memory-mapped Arrow data set in the datasets cache, named by their content.

    The rows leave Python memory when loading returns (the file is paged in as it is read: what a run holds while
    training does not grow with the data; validation before it still holds the rows), and the data set's
    fingerprint is fixed by its content, so TRL's tokenization (datasets `map`) is cached next to it: an unchanged
    data set is not tokenized again by the next run (benchmarks/RESULTS.md §5, §6).
    """
    import hashlib
    import os
    import shutil

    import datasets
    from datasets import Dataset, load_from_disk

    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "instructkit" / digest.hexdigest()[:24]
    if not (folder / "state.json").exists():
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        as_arrow(rows).save_to_disk(str(tmp))
        try:
            tmp.rename(folder)
        except OSError:  # another process (e.g. the other rank) wrote it first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(folder))


JSON_COLUMNS = ("messages", "tools")


def as_arrow(rows: list[dict]):
    """The rows as a Dataset. Rows with tools or tool calls keep `messages` and `tools` as JSON (datasets' Json
    feature): Arrow would give every call's arguments (and every tool schema) the keys of all the others, as nulls,
    which templates then render."""
    from datasets import Dataset, Features, Json

    keys = dict.fromkeys(k for r in rows for k in r)  # from_list takes the first row's keys only (a mixture: text+chat)
    rows = [r if len(r) == len(keys) else {k: r.get(k) for k in keys} for r in rows]
    if not has_tools(rows):
        return Dataset.from_list(rows)
    rest = [{k: v for k, v in r.items() if k not in JSON_COLUMNS} for r in rows]
    features = dict(Dataset.from_list(rest).features) if any(rest) else {}
    features.update({column: Json() for column in JSON_COLUMNS})
    return Dataset.from_list([{**r, "tools": r.get("tools"), "messages": r.get("messages")} for r in rows],
                             features=Features(features))
