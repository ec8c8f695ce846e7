"""Reading data: `embedded`, local .jsonl/.json/.csv/.parquet files and folders, or a hub dataset, into records
that remember their file and row (so every message can name them)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from instructkit.data.kinds import INSTRUCTIONS, DataKind
from instructkit.embedded import ensure_prose
from instructkit.errors import InstructkitError
from instructkit.paths import looks_like_local_path

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TEXT_SUFFIX = ".txt"  # a plain-text corpus, one text row per line: read when named, never picked up from a folder
TEST_SPLIT_NAMES = ("test", "validation", "valid", "val", "eval", "dev")


@dataclass
class Record:
    """One input row and where it came from, so every message can name the file and the row."""

    source: str
    row: int                     # 1-based position among the file's records
    data: dict


def read_file(path: Path) -> list[Record]:
    """Records of one local file; a malformed line names the file and line, an empty file is refused."""
    try:
        records = _read_file(path)
    except (UnicodeDecodeError, OSError) as err:
        raise InstructkitError(f"{path}: cannot be read ({type(err).__name__}: {err}).",
                               fix="save the file as UTF-8 text (or valid Parquet) and check its permissions.") from None
    except Exception as err:  # pyarrow's ArrowInvalid for a corrupt Parquet file
        if type(err).__module__.startswith("pyarrow"):
            raise InstructkitError(f"{path}: not a valid Parquet file ({err}).", fix="re-export the file.") from None
        raise
    if not records:
        raise InstructkitError(f"{path}: holds no data rows (the file is empty, or has a header only).",
                               fix="add rows, or remove the file (a folder's empty file is not skipped silently).")
    return records


def _read_file(path: Path) -> list[Record]:
    src = str(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = []
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InstructkitError(f"{src} line {line_no}: not valid JSON ({err.msg} at column {err.colno}).",
                                           fix="each line of a .jsonl file must be one JSON object.") from None
                records.append(Record(src, len(records) + 1, data))
        return _require_objects(records)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InstructkitError(f"{src}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).",
                                   fix="a .json data file holds a list of objects (or use .jsonl).") from None
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]} / {"train": [...]}
        if not isinstance(data, list):
            raise InstructkitError(f"{src}: expected a JSON list of row objects, found {type(data).__name__}.",
                                   fix="write the rows as [{...}, {...}] or one object per line in a .jsonl file.")
        return _require_objects([Record(src, i, d) for i, d in enumerate(data, 1)])
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, restkey="__extra_fields__")
            return [Record(src, i, dict(r)) for i, r in enumerate(reader, 1)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [Record(src, i, r) for i, r in enumerate(pq.read_table(path).to_pylist(), 1)]
    if suffix == TEXT_SUFFIX:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
        return [Record(src, i, {"text": line}) for i, line in enumerate(lines, 1) if line.strip()]
    raise InstructkitError(f"{src}: unsupported data file type {suffix!r}.",
                           fix=f"use one of {', '.join(DATA_SUFFIXES + (TEXT_SUFFIX,))} (.txt: one text row a line).")


def _require_objects(records: list[Record]) -> list[Record]:
    for r in records:
        if not isinstance(r.data, dict):
            raise InstructkitError(f"{r.source} row {r.row}: expected a JSON object, found {type(r.data).__name__}.",
                                   fix="each row must be an object such as {\"instruction\": ..., \"output\": ...}.")
    return records


def read_source(name: str, config: str | None = None, kind: DataKind = INSTRUCTIONS) -> dict[str, list[Record]]:
    """Records per split. Local folders use file names for splits (`*test*`, `*validation*`, else train).

    `embedded` is the embedded default's data of this `kind` (instructions, or preference pairs for DPO);
    `embedded_prose` its base's pretraining prose (text rows). A `.txt` file holds one text row per line.
    """
    if name == "embedded":
        name = str(kind.embedded_dir())
    elif name == "embedded_prose":  # the embedded base's pretraining prose, for replay in a mixture
        name = str(ensure_prose())
    path = Path(name).expanduser()
    if path.is_file():
        return {"train": read_file(path)}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES)
        if not files:
            raise InstructkitError(f"data folder {path} holds no {'/'.join(DATA_SUFFIXES)} files.",
                                   fix="point dataset_name at a folder of data files, or at one file.")
        splits: dict[str, list[Record]] = {}
        for f in files:
            splits.setdefault(_split_of(f.stem), []).extend(read_file(f))
        return splits
    if looks_like_local_path(name, DATA_SUFFIXES + (TEXT_SUFFIX,)):
        raise InstructkitError(f"data file {name} does not exist (relative paths start at {Path.cwd()}).",
                               fix="pass dataset_name with the path of an existing file or folder, "
                                   "or 'embedded' for the built-in data set.")
    return _read_hub(name, config)


def _split_of(stem: str) -> str:
    stem = stem.lower()
    if "test_phrasings" in stem:
        return "test_phrasings"
    for split in TEST_SPLIT_NAMES:
        if split in stem.replace("-", "_").split("_") or stem == split:
            return "test"
    return "train"


def _read_hub(name: str, config: str | None) -> dict[str, list[Record]]:
    from datasets import load_dataset

    try:
        ds = load_dataset(name, config)
    except Exception as err:  # offline, unknown repo, gated: all the same to the user
        raise InstructkitError(f"dataset {name!r} is not a local file or folder, and loading it from the Hugging Face "
                               f"Hub failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}).",
                               fix="check the path, or download the dataset and pass its local folder.") from None
    return {split: [Record(f"{name}[{split}]", i, r) for i, r in enumerate(d, 1)] for split, d in ds.items()}
