"""Tokenized rows with their loss masks, for what TRL cannot mask itself: chat templates without `{% generation %}`
markers (the stock templates of Qwen2.5, Llama 3.1, Mistral, Gemma ...), and mixtures of conversations with plain
text (TRL takes one form per data set).

Prefix rendering (open-instruct's `_tokenize_tulu_sft_with_assistant_labels`, axolotl's `find_turn`): for assistant
message k, the turn starts where `render(messages[:k], add_generation_prompt=True)` ends and ends where
`render(messages[:k + 1])` ends, minus the whitespace a template prints after the turn's closing special token
(Qwen's newline after `<|im_end|>`: the model never generates it, generation stops at `<|im_end|>`). A token is
trained when its characters overlap a turn: the rule transformers applies to `{% generation %}` spans, so these masks
equal, token for token, the masks of the same template with markers around each answer and its end-of-turn token
(tests/test_data_masks.py checks every bundled template). The token ids are exactly `apply_chat_template`'s.

It needs a template that renders a conversation's beginning the same whether or not more follows. A template that
renders earlier turns differently by what follows (Qwen3 drops the reasoning of turns before the last question)
cannot be masked so; `prefix_problem` finds that on probe conversations before anything loads, and a data row that
still breaks it stops with its row number. Text rows are tokenized as TRL tokenizes text (its eos appended, the
tokenizer's own BOS) and train every token.

TRL then gets `input_ids` + `assistant_masks` (the mask column it always applies; `completion_mask` would be ignored
unless `completion_only_loss: true`) and does the rest: labels, truncation to max_length, padding-free batches.
"""

from __future__ import annotations

import json

from instructkit.errors import InstructkitError

_Q1, _A1, _Q2, _A2 = "Name a colour.", "Blue is a colour.", "And another one?", "Green is one too."
_SYSTEM = "You answer briefly."
_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                         "required": ["city"]}}}
PROBES = [  # (messages, tools): what a template must render stably before its masks are derived by prefixes
    ([{"role": "user", "content": _Q1}, {"role": "assistant", "content": _A1}], None),
    ([{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _Q1}, {"role": "assistant", "content": _A1},
      {"role": "user", "content": _Q2}, {"role": "assistant", "content": _A2}], None),
]
TOOL_PROBE = ([{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
               {"role": "tool", "name": "get_weather", "content": "21 C, sunny"},
               {"role": "assistant", "content": "It is 21 C and sunny in Paris."}], [_TOOL])


class PrefixUnstable(Exception):
    """The template renders a conversation's beginning differently inside the whole conversation."""


def _render(tokenizer, messages, generation_prompt: bool, tools, chat_template) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def _specials(tokenizer) -> list[str]:
    return sorted({t for t in [*tokenizer.get_added_vocab(), *tokenizer.all_special_tokens] if t}, key=len,
                  reverse=True)


def assistant_spans(tokenizer, messages: list[dict], tools=None, chat_template=None) -> tuple[str, list]:
    """(the rendered conversation, [(start, end) character span of each assistant turn])."""
    full = _render(tokenizer, messages, False, tools, chat_template)
    specials, spans = _specials(tokenizer), []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head = _render(tokenizer, messages[:k], True, tools, chat_template) if k else ""
        through = _render(tokenizer, messages[:k + 1], False, tools, chat_template)
        for part in (head, through):
            if not full.startswith(part):
                at = next((i for i, (a, b) in enumerate(zip(part, full)) if a != b), min(len(part), len(full)))
                raise PrefixUnstable(f"the conversation up to message {k} renders {part[max(0, at - 30):at + 30]!r} "
                                     f"alone but {full[max(0, at - 30):at + 30]!r} inside the whole conversation")
        start, end = len(head), len(through)
        body = full[start:end].rstrip()
        if body != full[start:end] and any(body.endswith(s) for s in specials):
            end = start + len(body)  # what the template prints after the turn's end-of-turn token
        if end <= start:
            raise PrefixUnstable(f"assistant message {k} renders to nothing after the generation prompt")
        spans.append((start, end))
    return full, spans


def prefix_masks(tokenizer, messages: list[dict], tools=None, chat_template=None) -> dict:
    """input_ids (exactly `apply_chat_template`'s) and assistant_masks by prefix rendering."""
    full, spans = assistant_spans(tokenizer, messages, tools, chat_template)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    mask, i = [], 0
    for start, end in enc["offset_mapping"]:
        while i < len(spans) and start >= spans[i][1]:
            i += 1
        mask.append(int(i < len(spans) and end > spans[i][0]))
    return {"input_ids": enc["input_ids"], "assistant_masks": mask}


def marked_masks(tokenizer, messages: list[dict], tools=None, chat_template=None) -> dict:
    """input_ids and assistant_masks from a template's `{% generation %}` markers (what TRL computes)."""
    enc = tokenizer.apply_chat_template(messages, tools=tools, chat_template=chat_template, tokenize=True,
                                        return_dict=True, return_assistant_tokens_mask=True)
    return {"input_ids": list(enc["input_ids"]), "assistant_masks": list(enc["assistant_masks"])}


def text_masks(tokenizer, text: str, eos_token: str) -> dict:
    """A text row as TRL tokenizes one (eos appended, the tokenizer's special tokens), every token trained."""
    ids = tokenizer(text if text.endswith(eos_token) else text + eos_token)["input_ids"]
    return {"input_ids": ids, "assistant_masks": [1] * len(ids)}


def prefix_problem(tokenizer, chat_template=None) -> str | None:
    """Why prefix rendering cannot find the assistant turns of this template, or None: it must render the probe
    conversations stably, open each turn with the generation prompt (the answer's text comes right after it) and
    close it with a special token (the model has to learn to stop). The tool-call probe counts only when the template
    renders it at all."""
    probes = list(PROBES)
    try:
        _render(tokenizer, TOOL_PROBE[0], False, TOOL_PROBE[1], chat_template)
        probes.append(TOOL_PROBE)
    except Exception:  # jinja: the template takes no tools / tool turns
        pass
    specials, rendered = _specials(tokenizer), []
    for messages, tools in probes:  # stability first: without it nothing else can be found
        try:
            rendered.append((messages, *assistant_spans(tokenizer, messages, tools, chat_template)))
        except PrefixUnstable as err:
            return f"it renders earlier turns differently depending on what follows: {err}"
    for messages, full, spans in rendered:
        answers = [m for m in messages if m["role"] == "assistant"]
        for (start, end), message in zip(spans, answers):
            turn = full[start:end]
            if message["content"] and not turn.lstrip().startswith(message["content"]):
                return (f"with add_generation_prompt it does not open the assistant turn: the answer "
                        f"{message['content']!r} is preceded by {turn[:turn.find(message['content'])][:40]!r}")
            if not any(turn.endswith(s) for s in specials):
                return f"it closes an assistant turn with no special token ({turn[-20:]!r}): nothing to stop on"
    return None


def masks_match_prefix(tokenizer, chat_template: str) -> bool:
    """Whether `chat_template`'s markers (e.g. TRL's training variant of the tokenizer's template) train exactly what
    prefix rendering of the tokenizer's own template finds, on the same token ids, for every probe conversation."""
    for messages, tools in PROBES:
        try:
            if marked_masks(tokenizer, messages, tools, chat_template) != prefix_masks(tokenizer, messages, tools):
                return False
        except PrefixUnstable:
            return False
    return True


def _tokenize_row(example: dict, index: int, tokenizer, method: str, template, eos_token: str) -> dict:
    if example.get("text") is not None:
        return text_masks(tokenizer, example["text"], eos_token)
    messages = example.get("messages") or example["prompt"] + example["completion"]
    tools = example.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools or None
    try:
        if method == "prefix":
            return prefix_masks(tokenizer, messages, tools)
        return marked_masks(tokenizer, messages, tools, template)
    except PrefixUnstable as err:
        raise InstructkitError(f"training row {index}: its assistant turns cannot be found by rendering prefixes: "
                               f"{err}.", fix="remove the row, or set chat_template: to a template with "
                                              "{% generation %} markers.") from None
    except Exception as err:  # jinja's TemplateError (raise_exception in a template), a missing variable
        raise InstructkitError(f"training row {index}: the chat template does not render it ({type(err).__name__}: "
                               f"{err}).", fix="correct or remove the row (e.g. Llama 3.1's template takes one tool "
                                               "call per turn), or use another chat template.") from None


def tokenize(dataset, tokenizer, method: str, template: str | None, eos_token: str, num_proc: int | None = None):
    """`dataset` (validated rows: messages, prompt/completion, text) as input_ids + assistant_masks. `method`:
    'prefix' (prefix rendering of the tokenizer's own template) or 'template' (`template`'s markers)."""
    return dataset.map(_tokenize_row, with_indices=True, remove_columns=dataset.column_names, num_proc=num_proc,
                       fn_kwargs={"tokenizer": tokenizer, "method": method, "template": template,
                                  "eos_token": eos_token},
                       desc=f"Tokenizing with {'prefix-rendered' if method == 'prefix' else 'template'} masks")


def token_counts(rows, tokenized) -> dict:
    """{conversations|text: {rows, tokens, trained}} of a data set and its tokenized form (same order)."""
    counts: dict = {}
    kinds = ["text" if t is not None else "conversations" for t in
             (rows["text"] if "text" in rows.column_names else [None] * len(rows))]
    for kind, mask in zip(kinds, tokenized["assistant_masks"]):
        c = counts.setdefault(kind, {"rows": 0, "tokens": 0, "trained": 0})
        c["rows"], c["tokens"], c["trained"] = c["rows"] + 1, c["tokens"] + len(mask), c["trained"] + sum(mask)
    return counts
