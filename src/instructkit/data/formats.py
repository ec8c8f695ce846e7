"""Instruction data in, checked row by row, out in TRL's native forms so TRL does tokenization and masking.

Sources: `embedded` (the generated data set), a local .json/.jsonl/.csv/.parquet file or a folder of
them, or a hub dataset name. Formats, detected from the columns unless `dataset_format` says:

| format            | columns                                   | becomes (TRL form)                          |
|-------------------|-------------------------------------------|---------------------------------------------|
| alpaca            | instruction, output, [input], [system]    | conversational prompt / completion          |
| prompt_completion | prompt, completion (strings or messages)  | unchanged                                   |
| messages          | messages: [{role, content}, ...], [tools] | messages (assistant-only loss), tools       |
| sharegpt          | conversations: [{from, value}, ...]       | messages (assistant-only loss)              |
| text              | text                                      | text (plain language modelling)             |
| preference        | chosen, rejected, [prompt] (strings or    | prompt / chosen / rejected (for DPO; an     |
|                   | messages; no prompt = implicit prompt;    | implicit prompt is extracted by TRL's code) |
|                   | a prompt + whole conversations that start |                                             |
|                   | with it: ultrafeedback_binarized's shape) |                                             |

Content may be a list of text parts (joined); assistant turns may carry `tool_calls`, answered by `tool` turns, with
the row's `tools` (data.conversations). Every row is checked before anything is tokenized; a bad row stops the run
with file, row, field, problem and fix (or, with `on_bad_rows: skip`, is skipped and counted). Nothing is dropped
silently: columns no field of the format reads (ids, scores such as ultrafeedback's score_chosen) are counted and
logged as ignored; a row's `task` and `chat_template_kwargs` (rendering options TRL passes to the chat template per
row) are kept.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from instructkit.data.conversations import RowProblem, ToolTurns, content_text, tool_calls, tools_of
from instructkit.data.report import DataReport
from instructkit.data.sources import Record
from instructkit.errors import InstructkitError

FORMAT_COLUMNS = {  # detection order matters: the first whose required columns are present wins
    "preference": ({"chosen", "rejected"}, {"prompt"}),
    "messages": ({"messages"}, set()),
    "sharegpt": ({"conversations"}, set()),
    "alpaca": ({"instruction", "output"}, {"input", "system"}),
    "prompt_completion": ({"prompt", "completion"}, set()),
    "text": ({"text"}, set()),
}
ROLES = {"system", "user", "assistant", "tool"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
MAX_REPORTED_ROWS = 10
CARRIED = ("task", "chat_template_kwargs")  # kept next to the converted row


def row_format(data: dict) -> str | None:
    """The format whose required columns the row has (the first in FORMAT_COLUMNS' order), or None."""
    columns = {str(k) for k, v in data.items() if v is not None}
    return next((fmt for fmt, (required, _) in FORMAT_COLUMNS.items() if required <= columns), None)


class FormatTally:
    """The formats of rows as they stream past: per format its row count and first row, the files they are in, and
    the columns of the first rows (for the message when no row has a format's columns)."""

    def __init__(self):
        self.found: dict[str, list] = {}  # format -> [rows, source of the first, its row number]
        self.sources: set[str] = set()
        self.columns: set[str] = set()
        self.first_source: str | None = None
        self.seen = 0

    def add(self, record: Record) -> str | None:
        fmt = row_format(record.data)
        if self.seen < 100:
            self.columns.update(map(str, record.data))
        self.first_source = self.first_source or record.source
        self.seen += 1
        if fmt is not None:
            self.found.setdefault(fmt, [0, record.source, record.row])[0] += 1
            self.sources.add(record.source)
        return fmt

    def result(self) -> str:
        """The one format; rows of several formats are refused, naming each format, its row count and first row;
        rows of no format (a column missing) are left to the row checks, which name them."""
        if len(self.found) == 1:
            return next(iter(self.found))
        where = self.first_source or "the data set"
        if not self.found:
            raise InstructkitError(
                f"{where}: cannot tell the data format from its columns {sorted(self.columns)}.",
                fix="use alpaca (instruction/input/output), prompt/completion, messages, ShareGPT conversations or "
                    "text columns, or set dataset_format.")
        one_file = len(self.sources) == 1
        where = where if one_file else f"the files of {where.rsplit('/', 1)[0] or where}"
        shown = ", ".join(f"{fmt} {n} row{'s' * (n > 1)} (first: {'' if one_file else source + ' '}row {row})"
                          for fmt, (n, source, row) in sorted(self.found.items(), key=lambda item: -item[1][0]))
        raise InstructkitError(
            f"{where}: the rows are in {len(self.found)} formats: {shown}; one data set is read in one format.",
            fix="keep one format per file (a file per format, listed under dataset_mixture, which reads each in its "
                "own format and mixes them), or set dataset_format to read every row as one format.")


def detect_format(records, requested: str = "auto") -> str:
    """The one format of the rows (any iterable of records), from their columns (see `FormatTally.result`)."""
    if requested != "auto":
        return requested
    tally = FormatTally()
    for record in records:
        tally.add(record)
    return tally.result()


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


def _message(m, field: str, role_key: str, content_key: str, roles, tools) -> dict:
    """One message: its role, its content as a string (text parts joined), an assistant turn's tool calls."""
    calls = m.get("tool_calls") if isinstance(m, dict) else None
    if not isinstance(m, dict) or role_key not in m or (content_key not in m and not calls):
        raise RowProblem(field, f"needs '{role_key}' and '{content_key}'",
                         f"write each message as {{'{role_key}': ..., '{content_key}': ...}}")
    role = (roles or {r: r for r in ROLES}).get(m[role_key])
    if role is None:
        allowed = ", ".join(sorted(roles or ROLES))
        raise RowProblem(f"{field}.{role_key}", f"unknown role {m[role_key]!r}", f"use one of: {allowed}")
    content = m.get(content_key)
    message = {"role": role, "content": content_text("" if content is None and calls else content,
                                                     f"{field}.{content_key}")}
    if calls is not None and role == "assistant":
        message["tool_calls"] = tool_calls(calls, f"{field}.tool_calls", tools)
    if role == "tool" and isinstance(m.get("name"), str):
        message["name"] = m["name"]
    return message


def _messages(value, key: str, role_key: str = "role", content_key: str = "content", roles=None,
              require_assistant: bool = True, tools: list | None = None) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RowProblem(key, "is not a non-empty list of messages", f"write '{key}' as [{{'{role_key}': ..., "
                                                                     f"'{content_key}': ...}}, ...]")
    out, tool_turns = [], ToolTurns()
    for i, m in enumerate(value):
        out.append(tool_turns.after(_message(m, f"{key}[{i}]", role_key, content_key, roles, tools), f"{key}[{i}]"))
    turns = [m for m in out if m["role"] != "system"]
    if any(m["role"] == "system" for m in out[1:]):
        raise RowProblem(key, "has a system message after the first turn", "put the system message first")
    for a, b in zip(turns, turns[1:]):
        if a["role"] == b["role"] and a["role"] != "tool":
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
    if any(m["role"] == "assistant" and not m["content"].strip() and not m.get("tool_calls") for m in out):
        raise RowProblem(key, "has an empty assistant turn", "give every assistant turn some text or tool calls")
    return out


def _answers(value, key: str, after: str = "") -> list[dict]:
    """A completion, chosen or rejected answer: non-empty assistant messages (content parts joined)."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and m.get("role") == "assistant" for m in value):
        out = [{"role": "assistant", "content": content_text(m.get("content"), f"{key}[{i}].content")}
               for i, m in enumerate(value)]
        if all(m["content"].strip() for m in out):
            return out
    raise RowProblem(key, f"must be a non-empty list of non-empty assistant messages{after}",
                     f"write '{key}' as [{{'role': 'assistant', 'content': ...}}]")


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
            return {"prompt": prompt, "completion": _answers(data.get("completion"), "completion")}
        return {"prompt": _text(data, "prompt"), "completion": _text(data, "completion")}
    if fmt == "messages":
        tools = tools_of(data.get("tools"))
        return {"messages": _messages(data.get("messages"), "messages", tools=tools), **({"tools": tools} if tools else {})}
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
    if any(isinstance(data.get(k), list) and data[k] and isinstance(data[k][0], dict)
           and data[k][0].get("role") != "assistant" for k in ("chosen", "rejected")):
        data = _split_conversations(data, prompt)
        prompt = data["prompt"]
    out = {"prompt": _messages(prompt, "prompt", require_assistant=False)}
    for key in ("chosen", "rejected"):
        value = data.get(key)
        if isinstance(value, str):
            value = [{"role": "assistant", "content": value}]
        out[key] = _answers(value, key, " after the prompt")
    if out["chosen"] == out["rejected"]:
        raise RowProblem("rejected", "is the same as 'chosen'", "give a worse answer, or remove the row")
    return out


def _split_conversations(data: dict, prompt: list[dict]) -> dict:
    """A prompt with chosen / rejected as whole conversations that repeat it (ultrafeedback_binarized's shape): each
    conversation must start with the prompt (after an optional system message, the same in both); the rest of each
    is its answer. Checked, not assumed."""
    starts, out = [], {}
    for key in ("chosen", "rejected"):
        conversation = _messages(data.get(key), key)
        start = 1 if conversation[0]["role"] == "system" and prompt[0]["role"] != "system" else 0
        head = conversation[start:start + len(prompt)]
        if [(m["role"], m["content"]) for m in head] != [(m.get("role"), m.get("content")) for m in prompt]:
            raise RowProblem(key, "is a whole conversation that does not start with the row's prompt",
                             f"make '{key}' start with the prompt's turn(s), or drop the prompt column so the "
                             "shared start of chosen and rejected is the prompt")
        starts.append(conversation[:start + len(prompt)])
        out[key] = conversation[start + len(prompt):]
    if starts[0] != starts[1]:
        raise RowProblem("rejected", "starts with another system message than chosen",
                         "give both conversations the same system message")
    return {"prompt": starts[0], **out}


class Conversion(NamedTuple):
    """A stream's format, the indices of the rows it converted into the stage, and how many records it read."""

    format: str
    rows: range
    read: int


def convert_stream(records, requested: str, on_bad_rows: str, report: DataReport, stage, exclude=None, check=None,
                   after_read=None) -> Conversion:
    """The rows of a stream of records, read once, converted, validated and appended to `stage` (a
    `data.staging.Stage`): the format is detected as the rows pass (`requested` 'auto'); the run stops with a row-level report, or bad rows are
    skipped and counted. What is kept of a bad row is its file, number and problem, not the row. `exclude`: a
    callable on each valid record saying to leave it out (decontamination: `evaluation.decontamination.RowScreen`),
    listed in `report.excluded` as file:row. `after_read()` runs when the stream is read, before the format is
    decided (e.g. a mixture entry's columns); `check(format, first file)` once it is decided, before the bad rows are
    reported (e.g. the recipe's data kind)."""
    tally, pending, out, start = FormatTally(), [], _Converted(report, exclude, stage), len(stage)
    fmt = None if requested == "auto" else requested
    for rec in records:
        found = tally.add(rec)
        if fmt is None and found is None:
            pending.append(rec)  # no format's columns: a bad row whatever the format, converted once it is known
            continue
        if fmt is None:
            fmt = found
            for held in pending:
                out.add(held, fmt)
            pending = []
        out.add(rec, fmt)
    if after_read is not None:
        after_read()
    fmt = fmt if requested != "auto" else tally.result()  # raises when no row, or rows of several formats
    if check is not None:
        check(fmt, tally.first_source)
    if out.bad and on_bad_rows != "skip":
        raise out.problems(fmt, tally.seen)
    return Conversion(fmt, range(start, len(stage)), tally.seen)


class _Converted:
    """The converted rows of a stream, into the stage; the number of bad ones, and the file, number and problem of
    the first."""

    def __init__(self, report: DataReport, exclude, rows):
        self.report, self.exclude, self.rows, self.bad, self.shown = report, exclude, rows, 0, []

    def add(self, rec: Record, fmt: str) -> None:
        try:
            row = convert_row(rec.data, fmt)
        except RowProblem as p:
            self.bad += 1
            if len(self.shown) < MAX_REPORTED_ROWS:
                self.shown.append((rec.source, rec.row, p))
            self.report.skipped[f"{p.field_name.split('[')[0]} {p.problem}"] += 1
            return
        if self.exclude is not None and self.exclude(rec):
            self.report.excluded.append(f"{rec.source}:{rec.row}")
            return
        row.update({k: rec.data[k] for k in CARRIED if rec.data.get(k) is not None})
        used = _used_columns(fmt)
        self.report.ignored.update(k for k in map(str, rec.data) if k not in used)
        self.rows.append(row)

    def problems(self, fmt: str, n_rows: int) -> InstructkitError:
        shown = "\n".join(f"  {source} row {row}: field '{p.field_name}' {p.problem} — fix: {p.fix}"
                          for source, row, p in self.shown)
        more = f"\n  ... and {self.bad - len(self.shown)} more" if self.bad > len(self.shown) else ""
        counts = ", ".join(f"{reason}: {n}" for reason, n in self.report.skipped.most_common())
        return InstructkitError(f"{self.bad} of {n_rows} rows are not valid {fmt} rows ({counts}):\n{shown}{more}\n",
                                fix="correct these rows, or set on_bad_rows: skip to train without them "
                                    "(they are counted and reported).")


@functools.cache
def _used_columns(fmt: str) -> frozenset:
    required, optional = FORMAT_COLUMNS.get(fmt, (set(), set()))
    return frozenset(required | optional | set(CARRIED))


def form_of(row: dict) -> str:
    """The TRL form of a converted row: prompt_completion | messages | text | preference."""
    if "chosen" in row:
        return "preference"
    return "messages" if "messages" in row else "text" if "text" in row else "prompt_completion"


def is_conversational(row: dict) -> bool:
    """Message lists (rendered through the chat template), not plain strings."""
    return isinstance(row.get("messages"), list) or isinstance(row.get("prompt"), list)


def as_messages(row: dict) -> dict:
    """A conversational prompt/completion row as one message list (a mixture's conversations take one form)."""
    if "completion" not in row:
        return row
    return {"messages": row["prompt"] + row["completion"], **{k: row[k] for k in CARRIED if k in row}}
