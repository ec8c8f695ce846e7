"""What a conversation's messages may hold beyond a role and a string: content as a list of parts, tool calls and
tool results (TRL's form), and the row's `tools`. Each is validated here and normalized to what chat templates
render; a problem names the field inside the row (`messages[2].tool_calls[0].function.arguments`).

* Content parts (the OpenAI / TRL multimodal form) `[{"type": "text", "text": ...}, ...]` are joined into one string
  (templates that understand parts concatenate them the same way; Qwen2.5's and Llama 3.1's stock templates do not
  understand them at all); a part of another type (an image, audio) is refused: instructkit trains text models.
* A `tools` column: a list of tool schemas (`{"type": "function", "function": {"name", "description",
  "parameters"}}`), or a JSON string holding one; kept as given, since templates print it.
* Assistant turns with `tool_calls`: each `{"type": "function", "function": {"name", "arguments"}}` (or the flat
  `{"name", "arguments"}`), normalized to the first form; `arguments` a JSON object or a string holding one, kept as
  a dict (a string would be printed double-encoded by templates that `tojson` it). The name must be one of the row's
  tools.
* `tool` turns answer the calls of the assistant turn before them, one result per call (named after its call).
"""

from __future__ import annotations

import json

from instructkit.errors import close_match

NON_TEXT_PARTS = {"image", "image_url", "input_image", "audio", "input_audio", "video", "video_url", "file"}
TOOL_CALL_FORM = "{'type': 'function', 'function': {'name': ..., 'arguments': {...}}}"


class RowProblem(Exception):
    def __init__(self, field_name: str, problem: str, fix: str):
        self.field_name, self.problem, self.fix = field_name, problem, fix


def content_text(value, field: str) -> str:
    """A message's content as one string: a string as it is, a list of text parts joined."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise RowProblem(field, "is not a string or a list of text parts",
                         "write message content as a string, or as [{'type': 'text', 'text': ...}]")
    texts = []
    for j, part in enumerate(value):
        where = f"{field}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in NON_TEXT_PARTS:
            raise RowProblem(where, f"is an {kind!r} part, but instructkit trains text models on text parts only",
                             "remove the non-text parts, or describe them in a text part")
        if kind != "text":
            near = close_match(str(kind), ["text"])
            raise RowProblem(where, f"has unknown part type {kind!r}" + (f" — did you mean {near!r}?" if near else ""),
                             "write each part as {'type': 'text', 'text': ...}")
        if not isinstance(part.get("text"), str):
            raise RowProblem(f"{where}.text", "is not a string", "give each text part a 'text' string")
        texts.append(part["text"])
    return "".join(texts)


def tools_of(value) -> list[dict] | None:
    """The row's tool schemas (None when it has none); a JSON string is read."""
    if value is None or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RowProblem("tools", f"is a string that is not valid JSON ({err.msg} at column {err.colno})",
                             "write tools as a list of {'type': 'function', 'function': {'name': ..., ...}}") from None
    if not isinstance(value, list):
        raise RowProblem("tools", "is not a list of tool schemas",
                         "write tools as a list of {'type': 'function', 'function': {'name': ..., ...}}")
    for i, tool in enumerate(value):
        if not tool_name(tool):
            raise RowProblem(f"tools[{i}]", "has no function name",
                             "write each tool as {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}")
    return value


def tool_name(tool) -> str | None:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function", tool)
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def tool_calls(value, field: str, tools: list[dict] | None) -> list[dict]:
    """An assistant turn's calls, validated against the row's tools, in TRL's form with dict arguments."""
    if not isinstance(value, list) or not value:
        raise RowProblem(field, "is not a non-empty list of calls", f"write tool_calls as [{TOOL_CALL_FORM}]")
    declared = [tool_name(t) for t in tools or []]
    calls = []
    for j, call in enumerate(value):
        where = f"{field}[{j}]"
        function = call.get("function", call) if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise RowProblem(where, "is not a call: it needs a 'function' with a 'name'",
                             f"write each call as {TOOL_CALL_FORM}")
        if name not in declared:
            near = close_match(name, declared)
            have = f"(tools: {', '.join(declared)})" if declared else "(it declares no tools)"
            raise RowProblem(f"{where}.function.name", f"calls {name!r}, which the row's tools do not declare {have}"
                             + (f" — did you mean {near!r}?" if near else ""),
                             "declare the tool in the row's 'tools' column, or correct the name")
        normalized = {"type": "function", "function": {"name": name,
                                                       "arguments": arguments(function.get("arguments"),
                                                                              f"{where}.function.arguments")}}
        if isinstance(call.get("id"), str):
            normalized["id"] = call["id"]
        calls.append(normalized)
    return calls


def arguments(value, field: str) -> dict:
    """A call's arguments as a dict: an object, or a string holding a JSON object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RowProblem(field, f"is not valid JSON ({err.msg} at column {err.colno})",
                             'write arguments as a JSON object, e.g. {"city": "Paris"}, or a string holding one') \
                from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise RowProblem(field, f"is {type(value).__name__}, not a JSON object",
                         'write arguments as a JSON object of argument names and values, e.g. {"city": "Paris"}')
    return value


class ToolTurns:
    """Tool results in order: each answers one call of the assistant turn before it."""

    def __init__(self):
        self.pending: list[str] = []

    def after(self, message: dict, field: str) -> dict:
        """`message` checked against the open calls (a tool turn takes the next one), named after its call."""
        if message["role"] == "assistant":
            self.pending = [c["function"]["name"] for c in message.get("tool_calls", [])]
        elif message["role"] == "tool":
            if not self.pending:
                raise RowProblem(field, "is a tool turn with no preceding call to answer",
                                 "put each tool result right after the assistant turn whose tool_calls it answers "
                                 "(one result per call)")
            name = self.pending.pop(0)
            message = {**message, "name": message.get("name") or name}
        else:
            self.pending = []
        return message


def has_tools(rows: list[dict]) -> bool:
    """Whether any row carries tools or tool calls (stored as JSON so that Arrow does not merge their keys)."""
    return any(row.get("tools") or any("tool_calls" in m for m in row.get("messages") or []) for row in rows)
