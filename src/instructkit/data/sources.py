"""Reading data: `embedded`, local .jsonl/.json/.csv/.tsv/.parquet files (JSON and CSV also compressed) and
folders, a folder laid out like a hub dataset (a snapshot), or a hub dataset, into records that remember their
file and row (so every message can name them).

A flat folder of data files is split by file name (`*test*`, `*validation*`, else train). A folder laid out like a
hub dataset -- a README.md whose front matter has a `configs:` block, or data files only in subfolders, as
`huggingface-cli download --repo-type dataset` writes it -- is read by `datasets.load_dataset` as it is, with its
own config and split names; so is a hub name, or a builder name with `data_files` (TRL's `path: json`). Only the
splits asked for are read, and a split that is not there is refused with the names of those that are.

Files as people export them: CSV and TSV files, and compressed JSON / JSONL / CSV, are read by `datasets` (its csv and
json builders decompress .gz/.bz2/.xz/.zst themselves). A CSV's separator is `csv_delimiter` when set, a tab for .tsv,
else the one of `, ; tab |` that splits the header line into the most columns (spreadsheets export `;` where the
decimal mark is a comma); a UTF-8 byte-order mark is dropped; every cell stays text (`007` is not the number 7).
Plain .jsonl / .json files are read line by line here, so a malformed line is named exactly; when `datasets` cannot
read a compressed JSON file, the same line-by-line reading of its decompressed text names the line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from instructkit.data.kinds import INSTRUCTIONS, DataKind
from instructkit.embedded import ensure_prose
from instructkit.errors import InstructkitError
from instructkit.paths import looks_like_local_path

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
TEXT_SUFFIX = ".txt"  # a plain-text corpus, one text row per line: read when named, never picked up from a folder
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # what `datasets` decompresses (.zst through zstandard)
CSV_DELIMITERS = (",", ";", "\t", "|")
TEST_SPLIT_NAMES = ("test", "validation", "valid", "val", "eval", "dev")


@dataclass
class Record:
    """One input row and where it came from, so every message can name the file and the row."""

    source: str
    row: int                     # 1-based position among the file's records
    data: dict


def read_file(path: Path, csv_delimiter: str | None = None) -> list[Record]:
    """Records of one local file; a malformed line names the file and line, an empty file is refused."""
    return list(iter_file(path, csv_delimiter))


def iter_file(path: Path, csv_delimiter: str | None = None) -> Iterator[Record]:
    """The records of one local file as they are read (a .json list is parsed whole: use .jsonl for large data)."""
    n = 0
    try:
        for n, record in enumerate(_read_file(Path(path), csv_delimiter), 1):
            yield record
    except (UnicodeDecodeError, OSError) as err:
        raise InstructkitError(f"{path}: cannot be read ({type(err).__name__}: {err}).",
                               fix="save the file as UTF-8 text (or valid Parquet) and check its permissions.") from None
    except Exception as err:  # pyarrow's ArrowInvalid for a corrupt Parquet file
        if type(err).__module__.startswith("pyarrow"):
            raise InstructkitError(f"{path}: not a valid Parquet file ({err}).", fix="re-export the file.") from None
        raise
    if n == 0:
        raise InstructkitError(f"{path}: holds no data rows (the file is empty, or has a header only).",
                               fix="add rows, or remove the file (a folder's empty file is not skipped silently).")


def data_suffixes(path) -> tuple[str, str | None]:
    """(the data file type, the compression or None): `x.jsonl.gz` -> ('.jsonl', '.gz'), `x.csv` -> ('.csv', None)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        return (suffixes[-2] if len(suffixes) > 1 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), None


def is_data_file(path) -> bool:
    suffix, compression = data_suffixes(path)
    return suffix in DATA_SUFFIXES and not (compression and suffix == ".parquet")


def _read_file(path: Path, csv_delimiter: str | None = None) -> Iterable[Record]:
    src = str(path)
    suffix, compression = data_suffixes(path)
    if suffix == TEXT_SUFFIX and not compression:
        return _text_lines(path)
    if not is_data_file(path):
        shown = "".join(s for s in (suffix, compression) if s) or path.suffix
        raise InstructkitError(f"{src}: unsupported data file type {shown!r}.",
                               fix=f"use one of {', '.join(DATA_SUFFIXES + (TEXT_SUFFIX,))} (.txt: one text row a "
                                   f"line; JSON and CSV files also compressed as {', '.join(COMPRESSIONS)}).")
    if suffix in (".csv", ".tsv"):
        return read_csv_file(path, suffix, csv_delimiter)
    if compression:
        return read_compressed_json(path, suffix)
    if suffix == ".parquet":
        return _parquet_rows(path)
    return _json_file(path, suffix)


def _text_lines(path: Path) -> Iterator[Record]:
    with open(path, encoding="utf-8-sig") as f:
        yield from (Record(str(path), i, {"text": line.rstrip("\n")}) for i, line in enumerate(f, 1) if line.strip())


def _parquet_rows(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
        for data in batch.to_pylist():
            row += 1
            yield Record(str(path), row, data)


def _json_file(path: Path, suffix: str) -> Iterator[Record]:
    with open(path, encoding="utf-8-sig") as f:
        yield from _json_records(f, str(path), suffix)


def _json_records(f, src: str, suffix: str) -> Iterator[Record]:
    """Records of a .jsonl (one object per line) or .json (a list of objects) text; a malformed line is named."""
    if suffix == ".jsonl":
        row = 0
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise InstructkitError(f"{src} line {line_no}: not valid JSON ({err.msg} at column {err.colno}).",
                                       fix="each line of a .jsonl file must be one JSON object.") from None
            row += 1
            yield _object(Record(src, row, data))
        return
    try:
        data = json.loads(f.read())
    except json.JSONDecodeError as err:
        raise InstructkitError(f"{src}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).",
                               fix="a .json data file holds a list of objects (or use .jsonl).") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} / {"train": [...]}
    if not isinstance(data, list):
        raise InstructkitError(f"{src}: expected a JSON list of row objects, found {type(data).__name__}.",
                               fix="write the rows as [{...}, {...}] or one object per line in a .jsonl file.")
    yield from (_object(Record(src, i, d)) for i, d in enumerate(data, 1))


# --- files `datasets` reads: CSV / TSV, compressed JSON ------------------------------------------------------------

def _open_text(path: Path, newline: str | None = None):
    """The file's text, decompressed by its suffix (fsspec, as `datasets` reads it), without a byte-order mark."""
    import fsspec

    return fsspec.open(str(path), "rt", compression="infer", encoding="utf-8-sig", newline=newline).open()


def read_csv_file(path: Path, suffix: str, csv_delimiter: str | None = None) -> Iterator[Record]:
    """A CSV / TSV file (compressed or not) through `datasets`' csv builder, every cell as text (see the module)."""
    from datasets import Features, Value

    with _open_text(path, newline="") as f:
        sample = f.read(1 << 16)
    if not sample.strip():
        return
    delimiter = _delimiter(csv_delimiter, path) or ("\t" if suffix == ".tsv" else _sniff_delimiter(sample))
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter))
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise InstructkitError(f"{path}: the header names column {twice[0]!r} more than once.",
                               fix="give every column its own name.")
    yield from _load_local(path, "csv", delimiter=delimiter, encoding="utf-8-sig", na_filter=False,
                           features=Features({c: Value("string") for c in header}))


def _delimiter(value: str | None, path: Path) -> str | None:
    if value is None:
        return None
    value = {"tab": "\t", "\\t": "\t"}.get(value.lower(), value)
    if len(value) != 1:
        raise InstructkitError(f"csv_delimiter {value!r} (for {path}) is not one character.",
                               fix="set csv_delimiter to one character such as ';' or '|', or 'tab'.")
    return value


def _sniff_delimiter(sample: str) -> str:
    """The separator that splits the header line into the most columns (a comma when none splits it)."""
    counts = {d: len(next(csv.reader(io.StringIO(sample), delimiter=d))) for d in CSV_DELIMITERS}
    best = max(counts.values())
    return "," if best == 1 else next(d for d in CSV_DELIMITERS if counts[d] == best)


def read_compressed_json(path: Path, suffix: str) -> Iterator[Record]:
    """A compressed .jsonl / .json file through `datasets`' json builder; when that fails, the line-by-line
    reading of the decompressed text names the line (else the builder's own reason is shown)."""
    with _open_text(path) as f:
        if not f.read(1 << 12).strip():
            return
    try:
        rows = _load_local(path, "json")
    except InstructkitError:
        with _open_text(path) as f:
            for _ in _json_records(f, str(path), suffix):  # raises naming the line when the JSON is malformed
                pass
        raise
    yield from rows


def _load_local(path: Path, builder: str, **options) -> Iterator[Record]:
    """Records of `path` read by `datasets.load_dataset(builder, data_files=path)` (memory-mapped, read in batches);
    its failures become one message naming the file (and the line, where the reader says it), when it is called."""
    import datasets

    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to read file" line: the error says it
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as err:  # the builder wraps the reader's error (pandas, pyarrow, codecs) in its own
        if "corresponds to no data" in str(err):
            return iter(())  # a header only
        raise _unreadable(path, err) from None
    finally:
        datasets.logging.set_verbosity(verbosity)
    return (Record(str(path), i, _without_nulls(row)) for i, row in enumerate(_rows_of(ds), 1))


def _rows_of(dataset) -> Iterator[dict]:
    """The rows of a data set, read a batch at a time (a row at a time is datasets' slow path)."""
    for batch in dataset.iter(batch_size=1000):
        yield from (dict(zip(batch, values)) for values in zip(*batch.values()))


def _without_nulls(value):
    """A row as it was written: Arrow gives every row every column of the file, None where the row has none."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _unreadable(path: Path, err: Exception) -> InstructkitError:
    cause = err
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, UnicodeDecodeError):
        return InstructkitError(f"{path}: cannot be read ({type(cause).__name__}: {cause}).",
                                fix="save the file as UTF-8 text (or valid Parquet) and check its permissions.")
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(cause))
    if fields:
        wanted, line, saw = fields.groups()
        return InstructkitError(f"{path} line {line}: {saw} fields, but the header has {wanted}.",
                                fix="quote values that hold the separator, or set csv_delimiter to the file's "
                                    "separator.")
    reason = " ".join(str(cause).split())[:300]
    return InstructkitError(f"{path}: datasets cannot read it ({type(cause).__name__}: {reason}).",
                            fix="re-export the file (UTF-8; for CSV one header line, for JSON one object per line).")


def _object(r: Record) -> Record:
    if not isinstance(r.data, dict):
        raise InstructkitError(f"{r.source} row {r.row}: expected a JSON object, found {type(r.data).__name__}.",
                               fix="each row must be an object such as {\"instruction\": ..., \"output\": ...}.")
    return r


def read_source(*args, **kwargs) -> dict[str, list[Record]]:
    """The records of each split of `open_source`, read."""
    return {split: list(records) for split, records in open_source(*args, **kwargs).items()}


def open_source(name: str, config: str | None = None, kind: DataKind = INSTRUCTIONS, splits: tuple[str, ...] = (),
                data_dir: str | None = None, data_files=None, where: str | None = None,
                csv_delimiter: str | None = None) -> dict[str, Iterable[Record]]:
    """The records of each split, read as they are iterated (once). `embedded` is the embedded default's data of this `kind` (instructions, or preference pairs
    for DPO); `embedded_prose` its base's pretraining prose (text rows). A file is one `train` split (a `.txt` file
    holds one text row per line); a flat folder is split by file name. Data read by `datasets` (a hub-layout folder,
    a hub name, `data_files`) gives the `splits` asked for: the first must exist, the others may."""
    if name == "embedded":
        name = str(kind.embedded_dir())
    elif name == "embedded_prose":  # the embedded base's pretraining prose, for replay in a mixture
        name = str(ensure_prose())
    path = Path(name).expanduser()
    where = where or f"dataset {name}"
    if path.is_file() and data_files is None:
        return {"train": iter_file(path, csv_delimiter)}
    if path.is_dir() and data_dir is None and data_files is None and not is_hub_layout(path):
        files = sorted(p for p in path.iterdir() if is_data_file(p))
        if not files:
            raise InstructkitError(f"data folder {path} holds no {'/'.join(DATA_SUFFIXES)} files.",
                                   fix="point dataset_name at a folder of data files, or at one file.")
        found: dict[str, list[Path]] = {}
        for f in files:
            found.setdefault(_split_of(_stem(f)), []).append(f)
        return {split: _files(paths, csv_delimiter) for split, paths in found.items()}
    if not path.exists() and looks_like_local_path(name, DATA_SUFFIXES + COMPRESSIONS + (TEXT_SUFFIX,)) \
            and data_files is None:
        raise InstructkitError(f"data file {name} does not exist (relative paths start at {Path.cwd()}).",
                               fix="pass dataset_name with the path of an existing file or folder, "
                                   "or 'embedded' for the built-in data set.")
    return read_with_datasets(str(path) if path.exists() else name, config, splits or ("train", "test"), data_dir,
                              data_files, where)


def _files(paths: list[Path], csv_delimiter: str | None) -> Iterator[Record]:
    for path in paths:
        yield from iter_file(path, csv_delimiter)


def is_hub_layout(path: Path) -> bool:
    """A folder as the hub keeps a dataset: a README.md front matter with `configs:`, or data files only below."""
    readme = path / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---") and "\nconfigs:" in text.split("\n---", 1)[0]:
            return True
    if any(is_data_file(p) for p in path.iterdir()):
        return False
    return any(is_data_file(p) for p in path.rglob("*") if ".cache" not in p.parts)


def _stem(path: Path) -> str:
    """The file name without its data and compression suffixes: `test.jsonl.gz` -> `test`."""
    return path.name[:len(path.name) - len("".join(s for s in data_suffixes(path) if s))]


def _split_of(stem: str) -> str:
    stem = stem.lower()
    if "test_phrasings" in stem:
        return "test_phrasings"
    for split in TEST_SPLIT_NAMES:
        if split in stem.replace("-", "_").split("_") or stem == split:
            return "test"
    return "train"


def read_with_datasets(name: str, config: str | None, splits: tuple[str, ...], data_dir=None, data_files=None,
                       where: str | None = None) -> dict[str, Iterable[Record]]:
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


def _records(dataset, files: list, label: str) -> Iterator[Record]:
    """Records named by their Parquet shard and row when the shards are known, else by split and row."""
    import pyarrow.parquet as pq

    spans = []
    if files and all(str(f).endswith(".parquet") for f in files):
        spans = [(str(f), pq.ParquetFile(str(f)).metadata.num_rows) for f in files]
        if sum(n for _, n in spans) != len(dataset):
            spans = []
    shard, offset = 0, 0
    for i, row in enumerate(_rows_of(dataset)):
        while spans and i - offset >= spans[shard][1]:
            offset += spans[shard][1]
            shard += 1
        yield Record(spans[shard][0], i - offset + 1, row) if spans else Record(label, i + 1, row)
