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
|                   | messages; no prompt = implicit prompt;    | implicit prompt is extracted by TRL's code) |
|                   | a prompt + whole conversations that start |                                             |
|                   | with it: ultrafeedback_binarized's shape) |                                             |

Every row is checked before anything is tokenized; a bad row stops the run with file, row, field,
problem and fix (or, with `on_bad_rows: skip`, is skipped and counted). Nothing is dropped silently: columns no
field of the format reads (ids, scores such as ultrafeedback's score_chosen) are counted and logged as ignored; a
row's `task` and `chat_template_kwargs` (rendering options TRL passes to the chat template per row) are kept.
"""

from __future__ import annotations

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
ROLES = {"system", "user", "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
MAX_REPORTED_ROWS = 10
CARRIED = ("task", "chat_template_kwargs")  # kept next to the converted row


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
    if any(isinstance(data.get(k), list) and data[k] and isinstance(data[k][0], dict)
           and data[k][0].get("role") != "assistant" for k in ("chosen", "rejected")):
        data = _split_conversations(data, prompt)
        prompt = data["prompt"]
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


def convert_records(records: list[Record], fmt: str, on_bad_rows: str, report: DataReport) -> list[dict]:
    """Convert and validate every row; stop with a row-level report, or skip and count."""
    rows, bad = [], []
    required, optional = FORMAT_COLUMNS.get(fmt, (set(), set()))
    used = required | optional | set(CARRIED)
    for rec in records:
        try:
            row = convert_row(rec.data, fmt)
        except RowProblem as p:
            bad.append((rec, p))
            report.skipped[f"{p.field_name.split('[')[0]} {p.problem}"] += 1
            continue
        row.update({k: rec.data[k] for k in CARRIED if rec.data.get(k) is not None})
        report.ignored.update(k for k in map(str, rec.data) if k not in used)
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


def form_of(row: dict) -> str:
    """The TRL form of a converted row: prompt_completion | messages | text | preference."""
    if "chosen" in row:
        return "preference"
    return "messages" if "messages" in row else "text" if "text" in row else "prompt_completion"


def is_conversational(row: dict) -> bool:
    """Message lists (rendered through the chat template), not plain strings."""
    return isinstance(row.get("messages"), list) or isinstance(row.get("prompt"), list)
