"""Instruction data in, checked row by row, out in TRL's native forms so TRL does tokenization and masking.

Sources: `embedded` (the generated data set), a local .json/.jsonl/.csv/.parquet file or a folder of
them, or a hub dataset name. Formats, detected from the columns unless `dataset_format` says:

| format            | columns                                   | becomes (TRL form)                          |
|-------------------|-------------------------------------------|---------------------------------------------|
| alpaca            | instruction, output, [input], [system]    | conversational prompt / completion          |
| prompt_completion | prompt, completion (strings or messages)  | unchanged                                   |
| messages          | messages: [{role, content}, ...]          | messages (assistant-only loss)              |
| sharegpt          | conversations: [{from, value}, ...]       | messages (assistant-only loss)              |
| text              | text                                      | text (plain language modelling)             |

Every row is checked before anything is tokenized; a bad row stops the run with file, row, field,
problem and fix (or, with `on_bad_rows: skip`, is skipped and counted). Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from instructkit.errors import InstructkitError
from instructkit.paths import looks_like_local_path

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
FORMAT_COLUMNS = {  # detection order matters: the first whose required columns are present wins
    "messages": ({"messages"}, set()),
    "sharegpt": ({"conversations"}, set()),
    "alpaca": ({"instruction", "output"}, {"input", "system"}),
    "prompt_completion": ({"prompt", "completion"}, set()),
    "text": ({"text"}, set()),
}
ROLES = {"system", "user", "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
TEST_SPLIT_NAMES = ("test", "validation", "valid", "val", "eval", "dev")
MAX_REPORTED_ROWS = 10


@dataclass
class Record:
    """One input row and where it came from, so every message can name the file and the row."""

    source: str
    row: int                     # 1-based position among the file's records
    data: dict


@dataclass
class DataReport:
    """What happened to the rows: counts per split, skips by reason, detected format."""

    format: str = ""
    rows: dict = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    truncated: int = 0
    conversational: bool = True  # rows are message lists (rendered by the chat template), not plain strings

    def as_dict(self) -> dict:
        return {"format": self.format, "rows": self.rows, "skipped": dict(self.skipped), "truncated": self.truncated}

    def lines(self) -> list[str]:
        out = [f"data: format={self.format} " + " ".join(f"{k}={v}" for k, v in self.rows.items())]
        if self.skipped:
            out.append("data: skipped rows by reason: " + ", ".join(f"{r}: {n}" for r, n in self.skipped.most_common()))
        return out


# --- reading -----------------------------------------------------------------------------------------

def read_file(path: Path) -> list[Record]:
    """Records of one local file; a malformed line names the file and line."""
    try:
        return _read_file(path)
    except (UnicodeDecodeError, OSError) as err:
        raise InstructkitError(f"{path}: cannot be read ({type(err).__name__}: {err}).",
                               fix="save the file as UTF-8 text (or valid Parquet) and check its permissions.") from None
    except Exception as err:  # pyarrow's ArrowInvalid for a corrupt Parquet file
        if type(err).__module__.startswith("pyarrow"):
            raise InstructkitError(f"{path}: not a valid Parquet file ({err}).", fix="re-export the file.") from None
        raise


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


def read_source(name: str, config: str | None = None) -> dict[str, list[Record]]:
    """Records per split. Local folders use file names for splits (`*test*`, `*validation*`, else train)."""
    if name == "embedded":
        from instructkit.embedded import ensure_embedded

        name = str(ensure_embedded().data_dir)
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
    if looks_like_local_path(name, DATA_SUFFIXES):
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


# --- formats: detection, validation, conversion -----------------------------------------------------------

def detect_format(records: list[Record], requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    columns = {str(k) for r in records[:100] for k in r.data}
    for fmt, (required, _) in FORMAT_COLUMNS.items():
        if required <= columns:
            return fmt
    where = records[0].source if records else "the data set"
    raise InstructkitError(
        f"{where}: cannot tell the data format from its columns {sorted(columns)}.",
        fix="use alpaca (instruction/input/output), prompt/completion, messages, ShareGPT conversations or text "
            "columns, or set dataset_format.")


class RowProblem(Exception):
    def __init__(self, field_name: str, problem: str, fix: str):
        self.field_name, self.problem, self.fix = field_name, problem, fix


def _text(data: dict, key: str, required: bool = True, allow_empty: bool = False) -> str:
    value = data.get(key)
    if value is None or (isinstance(value, float) and value != value):  # missing, null or CSV NaN
        if required:
            raise RowProblem(key, "missing", f"add a non-empty '{key}' string")
        return ""
    if not isinstance(value, str):
        raise RowProblem(key, f"has type {type(value).__name__}, expected a string", f"write '{key}' as a string")
    if required and not allow_empty and not value.strip():
        raise RowProblem(key, "is empty", f"give '{key}' some text, or remove the row")
    return value


def _messages(value, key: str, role_key: str = "role", content_key: str = "content", roles=None,
              require_assistant: bool = True) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RowProblem(key, "is not a non-empty list of messages", f"write '{key}' as [{{'{role_key}': ..., "
                                                                     f"'{content_key}': ...}}, ...]")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or role_key not in m or content_key not in m:
            raise RowProblem(f"{key}[{i}]", f"needs '{role_key}' and '{content_key}'",
                             f"write each message as {{'{role_key}': ..., '{content_key}': ...}}")
        role = (roles or {r: r for r in ROLES}).get(m[role_key])
        if role is None:
            allowed = ", ".join(sorted(roles or ROLES))
            raise RowProblem(f"{key}[{i}].{role_key}", f"unknown role {m[role_key]!r}", f"use one of: {allowed}")
        if not isinstance(m[content_key], str):
            raise RowProblem(f"{key}[{i}].{content_key}", "is not a string", "write message content as a string")
        out.append({"role": role, "content": m[content_key]})
    turns = [m for m in out if m["role"] != "system"]
    if any(m["role"] == "system" for m in out[1:]):
        raise RowProblem(key, "has a system message after the first turn", "put the system message first")
    for a, b in zip(turns, turns[1:]):
        if a["role"] == b["role"]:
            raise RowProblem(key, f"has two '{a['role']}' turns in a row", "alternate user and assistant turns")
    if not turns or turns[0]["role"] != "user":
        raise RowProblem(key, "does not start with a user turn (after an optional system message)",
                         "begin the conversation with a user message")
    if not require_assistant:  # a conversational prompt: ends with the user turn the completion answers
        if out[-1]["role"] != "user":
            raise RowProblem(key, "does not end with a user turn", "end the prompt with the user's message")
        return out
    if not any(m["role"] == "assistant" for m in out):
        raise RowProblem(key, "has no assistant turn, so nothing would be trained", "add the assistant's reply")
    if any(m["role"] == "assistant" and not m["content"].strip() for m in out):
        raise RowProblem(key, "has an empty assistant turn", "give every assistant turn some text")
    return out


def convert_row(data: dict, fmt: str) -> dict:
    """One input row → TRL form (see the module table). Raises RowProblem."""
    if fmt == "alpaca":
        instruction, inp = _text(data, "instruction"), _text(data, "input", required=False)
        system = _text(data, "system", required=False)
        prompt = ([{"role": "system", "content": system}] if system.strip() else []) + [
            {"role": "user", "content": instruction + (f"\n\n{inp}" if inp.strip() else "")}]
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": _text(data, "output")}]}
    if fmt == "prompt_completion":
        if isinstance(data.get("prompt"), list) or isinstance(data.get("completion"), list):
            prompt = _messages(data.get("prompt"), "prompt", require_assistant=False) if data.get("prompt") else None
            if prompt is None:
                raise RowProblem("prompt", "missing", "add the prompt messages")
            completion = data.get("completion")
            if not isinstance(completion, list) or not completion or any(
                    not isinstance(m, dict) or m.get("role") != "assistant" or not str(m.get("content", "")).strip()
                    for m in completion):
                raise RowProblem("completion", "must be a non-empty list of non-empty assistant messages",
                                 "write completion as [{'role': 'assistant', 'content': ...}]")
            return {"prompt": prompt, "completion": [{"role": "assistant", "content": m["content"]} for m in completion]}
        return {"prompt": _text(data, "prompt"), "completion": _text(data, "completion")}
    if fmt == "messages":
        return {"messages": _messages(data.get("messages"), "messages")}
    if fmt == "sharegpt":
        return {"messages": _messages(data.get("conversations"), "conversations", "from", "value", SHAREGPT_ROLES)}
    if fmt == "text":
        return {"text": _text(data, "text")}
    raise InstructkitError(f"unknown dataset_format {fmt!r}.", fix=f"use one of: auto, {', '.join(FORMAT_COLUMNS)}.")


def convert_records(records: list[Record], fmt: str, on_bad_rows: str, report: DataReport) -> list[dict]:
    """Convert and validate every row; stop with a row-level report, or skip and count."""
    rows, bad = [], []
    for rec in records:
        try:
            row = convert_row(rec.data, fmt)
        except RowProblem as p:
            bad.append((rec, p))
            report.skipped[f"{p.field_name.split('[')[0]} {p.problem}"] += 1
            continue
        if "task" in rec.data:
            row["task"] = rec.data["task"]
        rows.append(row)
    if bad and on_bad_rows != "skip":
        shown = "\n".join(f"  {r.source} row {r.row}: field '{p.field_name}' {p.problem} — fix: {p.fix}"
                          for r, p in bad[:MAX_REPORTED_ROWS])
        more = f"\n  ... and {len(bad) - MAX_REPORTED_ROWS} more" if len(bad) > MAX_REPORTED_ROWS else ""
        counts = ", ".join(f"{reason}: {n}" for reason, n in report.skipped.most_common())
        raise InstructkitError(f"{len(bad)} of {len(records)} rows are not valid {fmt} rows ({counts}):\n{shown}{more}\n",
                               fix="correct these rows, or set on_bad_rows: skip to train without them "
                                   "(they are counted and reported).")
    return rows


# --- the data set for SFT --------------------------------------------------------------------------------

def load_sft_data(args, seed: int = 42):
    """DatasetDict with `train` and held-out split(s), plus a DataReport. `args`: InstructkitArguments."""
    from datasets import Dataset, DatasetDict

    splits = read_source(args.dataset_name, args.dataset_config)
    train_name, test_name = args.dataset_train_split, args.dataset_test_split
    if train_name not in splits:
        raise InstructkitError(f"dataset {args.dataset_name} has no split {train_name!r} (it has: {', '.join(splits)}).",
                               fix="set dataset_train_split to one of those.")
    report = DataReport(format=detect_format(splits[train_name], args.dataset_format))
    converted = {name: convert_records(records, report.format, args.on_bad_rows, report)
                 for name, records in splits.items()}
    if not converted[train_name]:
        raise InstructkitError(f"dataset {args.dataset_name}: no training rows left.", fix="check the data file.")
    out = {"train": converted[train_name]}
    held_out = {k: v for k, v in converted.items() if k != train_name}
    if test_name in held_out:
        out["test"] = held_out.pop(test_name)
        out.update(held_out)  # e.g. the embedded test_phrasings split
    elif args.test_split_size > 0:
        out["train"], test = split_by_size(out["train"], args.test_split_size, seed)
        if test:
            out["test"] = test
    report.rows = {k: len(v) for k, v in out.items()}
    report.conversational = is_conversational(out["train"][0])
    return DatasetDict({k: Dataset.from_list(v) for k, v in out.items()}), report


def is_conversational(row: dict) -> bool:
    """Message lists (rendered through the chat template), not plain strings."""
    return isinstance(row.get("messages"), list) or isinstance(row.get("prompt"), list)


def split_by_size(rows: list[dict], size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded held-out split: `size` < 1 is a fraction of the rows, >= 1 a row count."""
    if len(rows) < 2:
        return rows, []
    n_test = int(round(len(rows) * size)) if size < 1 else int(size)
    n_test = max(1, min(n_test, len(rows) - 1))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    test = set(order[:n_test])
    return [r for i, r in enumerate(rows) if i not in test], [rows[i] for i in sorted(test)]


def exact_match_rows(dataset, limit: int) -> list[dict]:
    """Held-out rows as {prompt, target, task} for `evaluation.exact_match` (text rows have no target)."""
    rows = []
    for row in dataset.select(range(min(limit, len(dataset)))):
        if "completion" in row:
            completion = row["completion"]
            target = completion[-1]["content"] if isinstance(completion, list) else completion
            rows.append({"prompt": row["prompt"], "target": target, "task": row.get("task") or "all"})
        elif "messages" in row:
            msgs = row["messages"]
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            rows.append({"prompt": msgs[:last], "target": msgs[last]["content"], "task": row.get("task") or "all"})
    return rows


# --- what TRL does with the rows ------------------------------------------------------------------------

def configure_loss(training_args, report: DataReport, tokenizer=None) -> None:
    """Train on responses only: completion-only for prompt/completion forms, assistant-only for conversations.

    With the tokenizer: conversations need a template with `{% generation %}` markers (or one TRL has a training
    variant of), checked here rather than deep in TRL. A conversational prompt/completion row whose template has
    them also gets assistant-only loss; TRL then trains the tokens both masks keep, i.e. the completion's content
    and end-of-turn token but not what the template renders after it (ChatML's newline).
    """
    from instructkit.chat_templates import bundled_names, training_template

    if report.format in ("alpaca", "prompt_completion"):
        training_args.completion_only_loss = True
        if tokenizer is not None and report.conversational and training_template(tokenizer):
            training_args.assistant_only_loss = True
    elif report.format in ("messages", "sharegpt"):
        training_args.assistant_only_loss = True
        if tokenizer is not None and not training_template(tokenizer):
            raise InstructkitError(
                f"{report.format} data trains the assistant turns only, which needs a chat template that marks them "
                "with {% generation %} ... {% endgeneration %}; the tokenizer's template has no such markers and TRL "
                "knows no training variant of it.",
                fix="set chat_template: to a bundled template (" + ", ".join(bundled_names()) + ") or a .jinja "
                    "file with the markers around each assistant turn's content and end-of-turn token.")


def report_dropped(dataset, trainer, report: DataReport) -> None:
    """Count what TRL's preparation removed or cut, which it does silently (rows whose prompt fills max_length)."""
    from instructkit.runs import log

    prepared = trainer.train_dataset
    max_length = trainer.args.max_length
    if not trainer.args.packing:
        dropped = len(dataset["train"]) - len(prepared)
        if dropped:
            report.skipped[f"prompt fills max_length={max_length}, no trained token left"] += dropped
            log(f"data: {dropped} of {len(dataset['train'])} training rows dropped: their prompt fills "
                f"max_length={max_length}, leaving no trained token (raise max_length to keep them)")
    if max_length and "input_ids" in prepared.column_names and not trainer.args.packing:
        at_limit = sum(1 for n in map(len, prepared["input_ids"]) if n >= max_length)
        report.truncated = at_limit
        if at_limit:
            log(f"data: {at_limit} training rows reach max_length={max_length} and were truncated "
                f"(or are exactly that long)")
