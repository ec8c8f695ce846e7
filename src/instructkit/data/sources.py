"""Reading data: `embedded`, local .jsonl/.json/.csv/.parquet files and folders, a folder laid out like a hub
dataset (a snapshot), or a hub dataset, into records that remember their file and row (so every message can name
them).

A flat folder of data files is split by file name (`*test*`, `*validation*`, else train). A folder laid out like a
hub dataset -- a README.md whose front matter has a `configs:` block, or data files only in subfolders, as
`huggingface-cli download --repo-type dataset` writes it -- is read by `datasets.load_dataset` as it is, with its
own config and split names; so is a hub name, or a builder name with `data_files` (TRL's `path: json`). Only the
splits asked for are read, and a split that is not there is refused with the names of those that are.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from instructkit.data.kinds import INSTRUCTIONS, DataKind
from instructkit.errors import InstructkitError
from instructkit.paths import looks_like_local_path

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
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
    raise InstructkitError(f"{src}: unsupported data file type {suffix!r}.",
                           fix=f"use one of {', '.join(DATA_SUFFIXES)}.")


def _require_objects(records: list[Record]) -> list[Record]:
    for r in records:
        if not isinstance(r.data, dict):
            raise InstructkitError(f"{r.source} row {r.row}: expected a JSON object, found {type(r.data).__name__}.",
                                   fix="each row must be an object such as {\"instruction\": ..., \"output\": ...}.")
    return records


def read_source(name: str, config: str | None = None, kind: DataKind = INSTRUCTIONS, splits: tuple[str, ...] = (),
                data_dir: str | None = None, data_files=None, where: str | None = None) -> dict[str, list[Record]]:
    """Records per split. `embedded` is the embedded default's data of this `kind` (instructions, or preference pairs
    for DPO). A file is one `train` split; a flat folder is split by file name. Data read by `datasets` (a hub-layout
    folder, a hub name, `data_files`) gives the `splits` asked for: the first must exist, the others may."""
    if name == "embedded":
        name = str(kind.embedded_dir())
    path = Path(name).expanduser()
    where = where or f"dataset {name}"
    if path.is_file() and data_files is None:
        return {"train": read_file(path)}
    if path.is_dir() and data_dir is None and data_files is None and not is_hub_layout(path):
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES)
        if not files:
            raise InstructkitError(f"data folder {path} holds no {'/'.join(DATA_SUFFIXES)} files.",
                                   fix="point dataset_name at a folder of data files, or at one file.")
        found: dict[str, list[Record]] = {}
        for f in files:
            found.setdefault(_split_of(f.stem), []).extend(read_file(f))
        return found
    if not path.exists() and looks_like_local_path(name, DATA_SUFFIXES) and data_files is None:
        raise InstructkitError(f"data file {name} does not exist (relative paths start at {Path.cwd()}).",
                               fix="pass dataset_name with the path of an existing file or folder, "
                                   "or 'embedded' for the built-in data set.")
    return read_with_datasets(str(path) if path.exists() else name, config, splits or ("train", "test"), data_dir,
                              data_files, where)


def is_hub_layout(path: Path) -> bool:
    """A folder as the hub keeps a dataset: a README.md front matter with `configs:`, or data files only below."""
    readme = path / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---") and "\nconfigs:" in text.split("\n---", 1)[0]:
            return True
    if any(p.suffix.lower() in DATA_SUFFIXES for p in path.iterdir()):
        return False
    return any(p.suffix.lower() in DATA_SUFFIXES for p in path.rglob("*") if ".cache" not in p.parts)


def _split_of(stem: str) -> str:
    stem = stem.lower()
    if "test_phrasings" in stem:
        return "test_phrasings"
    for split in TEST_SPLIT_NAMES:
        if split in stem.replace("-", "_").split("_") or stem == split:
            return "test"
    return "train"


def read_with_datasets(name: str, config: str | None, splits: tuple[str, ...], data_dir=None, data_files=None,
                       where: str | None = None) -> dict[str, list[Record]]:
    """The `splits` (first required) of a data set `datasets.load_dataset` reads: a hub-layout folder, a hub name, or
    a builder with data_files. Rows of Parquet shards are named by file and row."""
    where = where or f"dataset {name}"
    builder = _builder(name, config, data_dir, data_files, where)
    shards = {str(k): v for k, v in (builder.config.data_files or {}).items()}
    present = list(shards) or [str(k) for k in (builder.info.splits or {})]
    base = splits[0].split("[")[0]
    if present and base not in present:
        raise InstructkitError(f"{where}: {name} has no split {splits[0]!r}"
                               + (f" in config {config!r}" if config else "") + f" (it has: {', '.join(present)}).",
                               fix="set split (dataset_train_split / the mixture entry's split) to one of those.")
    out = {}
    for split in [splits[0]] + [s for s in splits[1:] if s in present]:
        dataset = _load(name, config, split, data_dir, data_files, where)
        files = shards.get(split, []) if "[" not in split else []
        out[split] = _records(dataset, files, f"{name} [{(config + '/') if config else ''}{split}]")
    return out


def _builder(name, config, data_dir, data_files, where):
    from datasets import get_dataset_config_names, load_dataset_builder

    try:
        return load_dataset_builder(name, config, data_dir=data_dir, data_files=data_files)
    except ValueError as err:  # no config named, or an unknown one
        if "onfig" not in str(err):
            raise InstructkitError(f"{where}: {name} cannot be read ({str(err).splitlines()[0][:200]}).",
                                   fix="check its files and README.md configs: block.") from None
        names = get_dataset_config_names(name)
        raise InstructkitError(f"{where}: {name} has " + (f"no config {config!r}" if config else "several configs")
                               + f" (it has: {', '.join(names)}).",
                               fix="set the config (dataset_config, or config: / name: in a mixture entry) to one "
                                   "of those.") from None
    except Exception as err:  # offline, unknown repo, gated: all the same to the user
        raise InstructkitError(f"{where}: {name!r} is not a local file or folder, and loading it from the Hugging "
                               f"Face Hub failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}).",
                               fix="check the path, or download the dataset and pass its local folder.") from None


def _load(name, config, split, data_dir, data_files, where):
    from datasets import load_dataset

    try:
        return load_dataset(name, config, split=split, data_dir=data_dir, data_files=data_files)
    except ValueError as err:  # a split expression it cannot take, e.g. train[:5000] of 1000 rows
        raise InstructkitError(f"{where}: split {split!r} of {name} cannot be read ({str(err).splitlines()[0][:200]}).",
                               fix="use a split name it has, or a valid slice such as train[:1000].") from None


def _records(dataset, files: list, label: str) -> list[Record]:
    """Records named by their Parquet shard and row when the shards are known, else by split and row."""
    import pyarrow.parquet as pq

    spans = []
    if files and all(str(f).endswith(".parquet") for f in files):
        spans = [(str(f), pq.ParquetFile(str(f)).metadata.num_rows) for f in files]
        if sum(n for _, n in spans) != len(dataset):
            spans = []
    records, shard, offset = [], 0, 0
    for i, row in enumerate(dataset):
        while spans and i - offset >= spans[shard][1]:
            offset += spans[shard][1]
            shard += 1
        records.append(Record(spans[shard][0], i - offset + 1, row) if spans else Record(label, i + 1, row))
    return records
