"""Validated rows on disk: a memory-mapped Arrow data set in the datasets cache, named by its content."""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.data.formats import form_of, is_conversational
from instructkit.data.report import DataReport


def to_datasets(out: dict[str, list[dict]], report: DataReport):
    """(DatasetDict of the splits, each on disk; the report with its row counts and the rows' form)."""
    from datasets import DatasetDict

    report.rows = {k: len(v) for k, v in out.items()}
    report.conversational = is_conversational(out["train"][0])
    report.form = form_of(out["train"][0])
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
        Dataset.from_list(rows).save_to_disk(str(tmp))
        try:
            tmp.rename(folder)
        except OSError:  # another process (e.g. the other rank) wrote it first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(folder))
