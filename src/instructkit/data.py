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
| preference        | chosen, rejected, [prompt] (strings or    | prompt / chosen / rejected (for DPO; an     |
|                   | messages; no prompt = implicit prompt)    | implicit prompt is extracted by TRL's code) |

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
    "preference": ({"chosen", "rejected"}, {"prompt"}),
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
    form: str = ""               # what the rows became: prompt_completion | messages | text | preference
    rows: dict = field(default_factory=dict)
    mixture: list = field(default_factory=list)  # per data set of a mixture: path, format, rows read, rows used
    skipped: Counter = field(default_factory=Counter)
    truncated: int = 0
    conversational: bool = True  # rows are message lists (rendered by the chat template), not plain strings

    def as_dict(self) -> dict:
        return {"format": self.format, "rows": self.rows, "skipped": dict(self.skipped), "truncated": self.truncated,
                **({"mixture": self.mixture} if self.mixture else {})}

    def lines(self) -> list[str]:
        out = [f"data: format={self.format} " + " ".join(f"{k}={v}" for k, v in self.rows.items())]
        out += [f"data: mixture {m['path']} ({m['format']}): {m['used']} rows from {m['rows']} (weight {m['weight']})"
                for m in self.mixture]
        if self.skipped:
            out.append("data: skipped rows by reason: " + ", ".join(f"{r}: {n}" for r, n in self.skipped.most_common()))
        return out


# --- reading -----------------------------------------------------------------------------------------

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


def read_source(name: str, config: str | None = None, preference: bool = False) -> dict[str, list[Record]]:
    """Records per split. Local folders use file names for splits (`*test*`, `*validation*`, else train).

    `embedded` is the generated instruction data, or with `preference` its preference pairs (for DPO).
    """
    if name == "embedded":
        from instructkit.embedded import ensure_embedded, ensure_preference_data

        name = str(ensure_preference_data() if preference else ensure_embedded().data_dir)
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
    if fmt == "preference":
        return _preference_row(data)
    raise InstructkitError(f"unknown dataset_format {fmt!r}.", fix=f"use one of: auto, {', '.join(FORMAT_COLUMNS)}.")


def inference_prompt(data: dict, chat: bool = True):
    """The prompt of a row to answer (`instructkit generate`, `serve`): `messages` ending with a user turn, `prompt`
    (a string or messages) or alpaca's `instruction` (+ `input`, `system`), as training renders it: a message list.
    Without a chat template (`chat` false) a single user turn is sent as raw text. Raises RowProblem."""
    if "messages" in data:
        key, prompt = "messages", _messages(data["messages"], "messages", require_assistant=False)
    elif isinstance(data.get("prompt"), list):
        key, prompt = "prompt", _messages(data["prompt"], "prompt", require_assistant=False)
    elif "prompt" in data:
        key, prompt = "prompt", [{"role": "user", "content": _text(data, "prompt")}]
    elif "instruction" in data:
        key, prompt = "instruction", convert_row({**data, "output": "-"}, "alpaca")["prompt"]
    else:
        raise RowProblem("prompt", f"missing (the row has {', '.join(sorted(map(str, data))) or 'no fields'})",
                         "give each row a 'prompt' string, a 'messages' list ending with a user turn, or an alpaca "
                         "'instruction'")
    if chat:
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    raise RowProblem(key, "is a conversation, but the model's tokenizer has no chat template to render it",
                     "send a single 'prompt' string (it goes to the model as raw text)")


def _preference_row(data: dict) -> dict:
    """prompt / chosen / rejected, both forms; with no prompt, the shared start of chosen and rejected is the prompt."""
    from trl.data_utils import extract_prompt

    conversational = any(isinstance(data.get(k), list) for k in ("prompt", "chosen", "rejected"))
    if not conversational:
        chosen, rejected = _text(data, "chosen"), _text(data, "rejected")
        prompt = _text(data, "prompt", required=False)
        if not prompt:
            row = extract_prompt({"chosen": chosen, "rejected": rejected})
            prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
            if not prompt.strip():
                raise RowProblem("prompt", "missing, and chosen and rejected share no opening text",
                                 "add a 'prompt' column (the text both answers reply to)")
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            if not value.strip():
                raise RowProblem(key, "has no text after the prompt", f"give '{key}' an answer")
        if chosen == rejected:
            raise RowProblem("rejected", "is the same as 'chosen'", "give a worse answer, or remove the row")
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if data.get("prompt") in (None, "", []):  # implicit prompt: both are whole conversations
        for key in ("chosen", "rejected"):
            _messages(data.get(key), key)
        row = extract_prompt({"chosen": data["chosen"], "rejected": data["rejected"]})
        if not row["prompt"]:
            raise RowProblem("prompt", "missing, and chosen and rejected do not start with the same turns",
                             "add a 'prompt' column, or start both conversations with the same user turn")
        data = row
    prompt = data["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    out = {"prompt": _messages(prompt, "prompt", require_assistant=False)}
    for key in ("chosen", "rejected"):
        value = data.get(key)
        if isinstance(value, str):
            value = [{"role": "assistant", "content": value}]
        if (not isinstance(value, list) or not value or any(
                not isinstance(m, dict) or m.get("role") != "assistant" or not isinstance(m.get("content"), str)
                or not m["content"].strip() for m in value)):
            raise RowProblem(key, "must be a non-empty list of non-empty assistant messages after the prompt",
                             f"write '{key}' as [{{'role': 'assistant', 'content': ...}}]")
        out[key] = [{"role": "assistant", "content": m["content"]} for m in value]
    if out["chosen"] == out["rejected"]:
        raise RowProblem("rejected", "is the same as 'chosen'", "give a worse answer, or remove the row")
    return out


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
    return load_data(args, seed, preference=False)


def load_preference_data(args, seed: int = 42):
    """Like `load_sft_data`, for preference (DPO) data: prompt / chosen / rejected rows."""
    return load_data(args, seed, preference=True)


def load_data(args, seed: int, preference: bool):
    if args.dataset_mixture:
        return _load_mixture(args, seed, preference)
    splits = read_source(args.dataset_name, args.dataset_config, preference=preference)
    train_name, test_name = args.dataset_train_split, args.dataset_test_split
    if train_name not in splits:
        raise InstructkitError(f"dataset {args.dataset_name} has no split {train_name!r} (it has: {', '.join(splits)}).",
                               fix="set dataset_train_split to one of those.")
    report = DataReport(format=detect_format(splits[train_name], args.dataset_format))
    if preference != (report.format == "preference"):
        where = splits[train_name][0].source if splits[train_name] else args.dataset_name
        raise InstructkitError(
            f"{where}: {report.format} data, but this recipe trains on "
            f"{'preference pairs (chosen / rejected)' if preference else 'instructions, not preference pairs'}.",
            fix="use recipes/dpo.py for prompt/chosen/rejected data, an SFT recipe for instruction data "
                "(or set dataset_format if the detection is wrong).")
    converted = {name: convert_records(records, report.format, args.on_bad_rows, report)
                 for name, records in splits.items()}
    if not converted[train_name]:
        reasons = ", ".join(f"{r}: {n}" for r, n in report.skipped.most_common())
        raise InstructkitError(f"dataset {args.dataset_name}: no training rows left: "
                               + (f"every row of split {train_name!r} was skipped as invalid ({reasons})."
                                  if reasons else f"split {train_name!r} is empty."),
                               fix="correct the rows (on_bad_rows: error lists them with their row numbers).")
    out = {"train": converted[train_name]}
    held_out = {k: v for k, v in converted.items() if k != train_name}
    if test_name in held_out:
        out["test"] = held_out.pop(test_name)
        out.update(held_out)  # e.g. the embedded test_phrasings split
    elif args.test_split_size > 0:
        out["train"], test = split_by_size(out["train"], args.test_split_size, seed)
        if test:
            out["test"] = test
    return _finish(out, report)


def _finish(out: dict[str, list[dict]], report: DataReport):
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


def form_of(row: dict) -> str:
    """The TRL form of a converted row: prompt_completion | messages | text | preference."""
    if "chosen" in row:
        return "preference"
    return "messages" if "messages" in row else "text" if "text" in row else "prompt_completion"


# --- mixtures --------------------------------------------------------------------------------------------

MIXTURE_KEYS = ("path", "split", "config", "format", "columns", "weight")


def _load_mixture(args, seed: int, preference: bool):
    """Every data set of `dataset_mixture` read, validated and converted on its own, weighted, then mixed."""
    from instructkit.config import close_match

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
        splits = read_source(str(entry["path"]), entry.get("config"), preference=preference)
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
    if preference != ({form_of(r) for r in mixed} == {"preference"}):
        raise InstructkitError("dataset_mixture holds instruction data and preference pairs, or the wrong kind for "
                               "this recipe.", fix="mix preference data sets for recipes/dpo.py, instruction data "
                                                   "sets for the SFT recipes.")
    if {form_of(r) for r in mixed} == {"messages", "prompt_completion"}:  # one form for TRL: conversations
        mixed = [{"messages": r["prompt"] + r["completion"], **({"task": r["task"]} if "task" in r else {})}
                 if "completion" in r else r for r in mixed]
    rng.shuffle(mixed)
    train, test = split_by_size(mixed, args.test_split_size, seed) if args.test_split_size > 0 else (mixed, [])
    return _finish({"train": train, **({"test": test} if test else {})}, report)


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


def exact_match_rows(dataset, limit: int, seed: int = 0) -> list[dict]:
    """Held-out rows as {prompt, target, task} for `evaluation.exact_match` (text rows have no target).

    More rows than `limit`: a seeded sample (the same rows before and after training), not the first ones, which
    in a user's file are often sorted by source or task.
    """
    rows = []
    picked = range(len(dataset)) if len(dataset) <= limit else sorted(random.Random(seed).sample(range(len(dataset)), limit))
    for row in dataset.select(picked):
        if "completion" in row or "chosen" in row:  # a preference row: the chosen answer is the target
            completion = row["completion"] if "completion" in row else row["chosen"]
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

    form = report.form or {"alpaca": "prompt_completion", "sharegpt": "messages"}.get(report.format, report.format)
    check_loss_options(training_args, report, form)
    if form == "prompt_completion":
        training_args.completion_only_loss = True
        if tokenizer is not None and report.conversational and training_template(tokenizer):
            training_args.assistant_only_loss = True
    elif form == "messages":
        training_args.assistant_only_loss = True
        if tokenizer is not None and not training_template(tokenizer):
            raise InstructkitError(
                f"{report.format} data trains the assistant turns only, which needs a chat template that marks them "
                "with {% generation %} ... {% endgeneration %}; the tokenizer's template has no such markers and TRL "
                "knows no training variant of it.",
                fix="set chat_template: to a bundled template (" + ", ".join(bundled_names()) + ") or a .jinja "
                    "file with the markers around each assistant turn's content and end-of-turn token.")


def defer_padding_free(training_args) -> bool:
    """Let SFT rows be flattened padding-free (no pad token computed) while TRL still truncates them to max_length.

    TRL 1.16 refuses `padding_free` + `max_length` without packing ("max_length is not enforced", the guard of
    trl#5359; unsloth#7951 works around the same one), yet `SFTTrainer._prepare_dataset` truncates every row to
    max_length either way. So the trainer is built padding and `apply_padding_free` switches its collator after
    (the batches are the same rows; tests/test_data.py checks truncation and equal loss). The deferral is noted on
    `training_args`, so `apply_padding_free` can always be called.
    """
    training_args.padding_free_deferred = bool(
        getattr(training_args, "padding_free", False) and not getattr(training_args, "packing", False)
        and training_args.max_length is not None)
    if training_args.padding_free_deferred:
        training_args.padding_free = False


def apply_padding_free(trainer) -> None:
    """The second half of `defer_padding_free`, on the built trainer; nothing to do unless it deferred."""
    if getattr(trainer.args, "padding_free_deferred", False):
        trainer.data_collator.padding_free = trainer.padding_free = trainer.args.padding_free = True


def check_loss_options(training_args, report: DataReport, form: str) -> None:
    """Loss options the user set that the data cannot have, refused here rather than deep inside TRL."""
    kind = f"{report.format} data ({'plain text rows' if form == 'text' else 'plain-string prompt/completion rows'})"
    if getattr(training_args, "assistant_only_loss", False) and not report.conversational and form != "messages":
        raise InstructkitError(
            f"assistant_only_loss: true trains the assistant turns of conversations, but the training data is {kind}.",
            fix="set assistant_only_loss: false, or use conversational data (messages, ShareGPT, alpaca or "
                "message-list prompt/completion rows).")
    if getattr(training_args, "completion_only_loss", None) is True and form == "text":
        raise InstructkitError(f"completion_only_loss: true needs prompt/completion rows, but the training data is "
                               f"{kind}, which has no completion.",
                               fix="set completion_only_loss: false (text rows train on every token), or use "
                                   "prompt/completion or alpaca data.")


def report_dropped(dataset, trainer, report: DataReport) -> None:
    """Count what TRL's preparation removed or cut, which it does silently (rows whose prompt fills max_length)."""
    from instructkit.runs import log

    prepared = trainer.train_dataset
    max_length = trainer.args.max_length
    if not getattr(trainer.args, "packing", False):
        dropped = len(dataset["train"]) - len(prepared)
        if dropped:
            report.skipped[f"prompt fills max_length={max_length}, no trained token left"] += dropped
            log(f"data: {dropped} of {len(dataset['train'])} training rows dropped: their prompt fills "
                f"max_length={max_length}, leaving no trained token (raise max_length to keep them)")
    if max_length and "chosen_ids" in prepared.column_names:  # DPO: prompt + the longer answer
        lengths = (len(p) + max(len(c), len(r)) for p, c, r in
                   zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"]))
        at_limit = sum(1 for n in lengths if n > max_length)
        report.truncated = at_limit
        if at_limit:
            log(f"data: {at_limit} preference pairs are longer than max_length={max_length}; their answers are cut")
    if max_length and "input_ids" in prepared.column_names and not getattr(trainer.args, "packing", False):
        at_limit = sum(1 for n in map(len, prepared["input_ids"]) if n >= max_length)
        report.truncated = at_limit
        if at_limit:
            log(f"data: {at_limit} training rows reach max_length={max_length} and were truncated "
                f"(or are exactly that long)")
