"""Validated rows on disk: a memory-mapped Arrow data set in the datasets cache, named by its content."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Collection, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

from instructkit.data.conversations import has_tools
from instructkit.data.formats import as_messages
from instructkit.data.report import DataReport
from instructkit.data.staging import Stage
from instructkit.errors import InstructkitError

BATCH_ROWS = 1000
JSON_COLUMNS = ("messages", "tools")


def cache_folder() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "instructkit"


def to_datasets(stage: Stage, choices: dict[str, Sequence[int]], report: DataReport, messages: Collection[str] = ()):
    """(DatasetDict of the splits, each the staged rows `choices` names, on disk; the report with its row counts
    and the training rows' forms). `messages`: the splits whose prompt/completion rows become message lists (the
    rows of a mixture of forms)."""
    from datasets import DatasetDict

    report.rows = {k: len(v) for k, v in choices.items()}
    train = stage.summary(choices["train"])
    report.conversational = train.conversational
    forms = {"messages" if "train" in messages and f == "prompt_completion" else f for f in train.forms}
    report.form = "+".join(sorted(forms))  # e.g. messages+text: replay in a mixture
    return DatasetDict({k: on_disk(stage, v, k in messages) for k, v in choices.items()}), report


def on_disk(stage: Stage, indices: Sequence[int], messages: bool = False):
    """The staged rows `indices` names, in that order, as a memory-mapped Arrow data set in the datasets cache,
    named by their content.

    Written a batch at a time, so what preparation holds does not grow with the data (benchmarks/RESULTS.md §6); the
    data set's fingerprint follows from its file, so TRL's tokenization (datasets `map`) is cached next to it: an
    unchanged data set is not tokenized again by the next run (§5).
    """
    from datasets import Dataset

    if not indices:
        return Dataset.from_list([])
    digest = hashlib.sha256(b"messages\n" if messages else b"")
    for line in stage.lines(indices):
        digest.update(line)
    folder = cache_folder() / f"rows-{digest.hexdigest()[:24]}"
    if not (folder / "data.arrow").exists():
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        tools = stage.summary(indices).tools

        def rows() -> Iterator[dict]:
            return (as_messages(r) for r in stage.rows(indices)) if messages else stage.rows(indices)

        write_arrow(rows, tmp / "data.arrow", tools)
        try:
            tmp.rename(folder)
        except OSError:  # another process (e.g. the other rank) wrote it first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return Dataset.from_file(str(folder / "data.arrow"))


def write_arrow(rows, path: Path, tools: bool) -> None:
    """`rows()` (called twice: once for the columns' types, once to write) into an Arrow file, a batch at a time."""
    from datasets.arrow_writer import ArrowWriter

    features = features_of(_batches(rows()), tools)
    with ArrowWriter(features=features, path=str(path)) as writer:
        for batch in _batches(rows()):
            columns = {k: [r.get(k) for r in batch] for k in features}
            writer.write_batch(features.encode_batch(columns) if tools else columns)  # only Json needs encoding
        writer.finalize()


def features_of(batches: Iterable[list[dict]], tools: bool):
    """The datasets Features of every row of `batches`: each column's type unified over the batches (a column null
    in one batch and text in another is text; structs get the fields of all rows). Rows with tools or tool calls
    keep `messages` and `tools` as JSON (datasets' Json feature): Arrow would give every call's arguments (and every
    tool schema) the keys of all the others, as nulls, which templates then render."""
    import pyarrow as pa
    from datasets import Features, Json

    schema = None
    for batch in batches:
        keys = [k for k in dict.fromkeys(k for r in batch for k in r) if not (tools and k in JSON_COLUMNS)]
        try:
            batch_schema = pa.Table.from_pydict({k: [r.get(k) for r in batch] for k in keys}).schema
            schema = batch_schema if schema is None else pa.unify_schemas([schema, batch_schema],
                                                                          promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise InstructkitError(f"the data's rows do not fit one table: {err}.",
                                   fix="give each column values of one type in every row (e.g. task as text).") \
                from None
    features = Features.from_arrow_schema(schema) if schema is not None else Features()
    if tools:
        features.update({column: Json() for column in JSON_COLUMNS})
    return features


def as_arrow(rows: list[dict]):
    """In-memory rows as a Dataset, with the columns `on_disk` gives them."""
    from datasets import Dataset

    features = features_of([rows], has_tools(rows))
    return Dataset.from_list([{k: r.get(k) for k in features} for r in rows], features=features)


def _batches(rows: Iterator[dict]) -> Iterator[list[dict]]:
    while batch := list(islice(rows, BATCH_ROWS)):
        yield batch
