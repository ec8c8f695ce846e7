"""Files as people export them, read through `datasets`: CSV with a byte-order mark and `;` or tab separators, TSV,
and JSON / JSONL / CSV compressed as .gz / .bz2 / .xz / .zst; every row as it was written, errors naming the line."""

import bz2
import gzip
import json
import lzma

import pytest

from instructkit.config.arguments import InstructkitArguments
from instructkit.data.formats import detect_format
from instructkit.data.loading import load_instructions
from instructkit.data.sources import data_suffixes, read_file, read_source
from instructkit.errors import InstructkitError

ROWS = [{"instruction": f"Add {i}; then {i}, again", "input": "", "output": f"{2 * i:03d}"} for i in range(6)]


def compress(data: bytes, how: str) -> bytes:
    import zstandard

    return {"": lambda d: d, ".gz": lambda d: gzip.compress(d, mtime=0), ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": zstandard.ZstdCompressor().compress}[how](data)


def csv_text(sep: str) -> str:
    quote = lambda v: f'"{v}"' if sep in v or "," in v or ";" in v else v  # noqa: E731  (as spreadsheets quote)
    return "instruction{0}input{0}output\n".format(sep) + "".join(
        sep.join(quote(r[k]) for k in ("instruction", "input", "output")) + "\n" for r in ROWS)


def as_read(records) -> list[dict]:
    return [r.data for r in records]


@pytest.mark.parametrize("compression", ["", ".gz", ".bz2", ".xz", ".zst"])
@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_every_compression_datasets_reads(tmp_path, kind, compression):
    text = {"jsonl": "".join(json.dumps(r) + "\n" for r in ROWS), "json": json.dumps(ROWS), "csv": csv_text(",")}[kind]
    path = tmp_path / f"data.{kind}{compression}"
    path.write_bytes(compress(text.encode(), compression))
    records = read_file(path)
    assert as_read(records) == ROWS and [r.row for r in records] == list(range(1, 7))
    assert {r.source for r in records} == {str(path)}


@pytest.mark.parametrize("sep, name", [(";", "data.csv"), ("\t", "data.csv"), ("\t", "data.tsv"), ("|", "data.csv"),
                                       (";", "data.csv.gz")])
def test_spreadsheet_exports_with_a_byte_order_mark_and_other_separators(tmp_path, sep, name):
    path = tmp_path / name
    data = ("\ufeff" + csv_text(sep)).encode("utf-8")
    path.write_bytes(compress(data, ".gz") if name.endswith(".gz") else data)
    records = read_file(path)
    assert as_read(records) == ROWS  # the header's first column is 'instruction', not '\ufeffinstruction'
    assert all(isinstance(v, str) for r in records for v in r.data.values())  # '000' stays text


def test_csv_delimiter_overrides_the_guess(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("instruction,output\nsay a;b,a;b\n")  # the header has no ';', so the guess is ','
    assert as_read(read_file(path)) == [{"instruction": "say a;b", "output": "a;b"}]
    path.write_text("instruction;output\nsay a,b;a,b\n")
    args = InstructkitArguments(dataset_name=str(path), csv_delimiter=";", test_split_size=0)
    assert load_instructions(args).train[0]["completion"][0]["content"] == "a,b"
    for tab in ("tab", "\\t", "\t"):
        path.write_text("instruction\toutput\nx\ty\n")
        assert as_read(read_file(path, tab)) == [{"instruction": "x", "output": "y"}]


def test_a_folder_of_compressed_files_splits_by_name(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl.gz").write_bytes(compress("".join(json.dumps(r) + "\n" for r in ROWS).encode(),
                                                              ".gz"))
    (tmp_path / "d" / "test.csv.xz").write_bytes(compress(csv_text(";").encode(), ".xz"))
    splits = read_source(str(tmp_path / "d"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "test": 6}
    assert data_suffixes("a.b.jsonl.zst") == (".jsonl", ".zst") and data_suffixes("x.csv") == (".csv", None)


def test_rows_are_as_written_not_as_arrow_fills_them(tmp_path):
    """Arrow gives every row every column of the file; a row keeps only its own (so formats can be told apart)."""
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = tmp_path / "mixed.jsonl.gz"
    path.write_bytes(compress((json.dumps(ROWS[0]) + "\n" + json.dumps(chat) + "\n").encode(), ".gz"))
    assert as_read(read_file(path)) == [ROWS[0], chat]


def test_errors_name_the_line_as_for_plain_files(tmp_path):
    bad = tmp_path / "data.jsonl.bz2"
    bad.write_bytes(compress((json.dumps(ROWS[0]) + "\n" + '{"instruction": "x",}\n').encode(), ".bz2"))
    with pytest.raises(InstructkitError, match=r"data.jsonl.bz2 line 2: not valid JSON \(Expecting property name"):
        read_file(bad)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("instruction,output\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(InstructkitError, match="latin.csv: cannot be read .UnicodeDecodeError"):
        read_file(latin)
    for empty in ("instruction,output\n", ""):
        (tmp_path / "e.csv").write_text(empty)
        with pytest.raises(InstructkitError, match="e.csv: holds no data rows"):
            read_file(tmp_path / "e.csv")
    (tmp_path / "e.jsonl.gz").write_bytes(compress(b"", ".gz"))
    with pytest.raises(InstructkitError, match="e.jsonl.gz: holds no data rows"):
        read_file(tmp_path / "e.jsonl.gz")


def test_a_bad_row_of_a_csv_file_is_named_by_its_row(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("instruction;input;output\nReverse a;;a\nReverse b;;\n")
    with pytest.raises(InstructkitError, match=r"data.csv row 2: field 'output' is empty"):
        load_instructions(InstructkitArguments(dataset_name=str(path)))


def test_mixed_formats_name_each_format_with_its_rows(tmp_path):
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rows = ROWS[:2] + [chat] * 3 + [{"instruction": "no output"}]  # the last row has no format: a row problem
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InstructkitError) as info:
        detect_format(read_file(path))
    assert str(info.value).startswith(f"{path}: the rows are in 2 formats: messages 3 rows (first: row 3), alpaca 2 "
                                      "rows (first: row 1); one data set is read in one format.")
    assert detect_format(read_file(path), "messages") == "messages"  # the user decides: every row as messages
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS + [{"instruction": "no output"}]))
    assert detect_format(read_file(path)) == "alpaca"  # and the last row fails its check, by number
