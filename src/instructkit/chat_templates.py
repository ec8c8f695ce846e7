"""Chat templates: the bundled training templates, putting one on a tokenizer, and what a template renders.

Every bundled template (`templates/<name>.jinja`) wraps each assistant turn's content *and its end-of-turn token*
in `{% generation %}` markers, so TRL's assistant-only loss trains exactly what the model has to produce, including
the token that makes it stop. Control tokens a template needs (`<|im_start|>`, `<start_of_turn>`, ...) are added to
the tokenizer when it lacks them; the caller resizes the embeddings and makes those rows trainable (see
`modeling.loading.load_model` / `modeling.adapters.lora_config`).

BOS: TRL tokenizes conversations with `apply_chat_template(tokenize=True)` (trl/data_utils.py `_tokenize`, called from
`SFTTrainer._prepare_dataset`), and transformers 5.23 encodes the rendered text with `add_special_tokens=False`
(`PreTrainedTokenizerBase.apply_chat_template`); TRL's collators that render text themselves pass
`add_special_tokens=False` too. So in a conversation the BOS comes from the template alone: the bundled templates
for BOS-using families render `{{ bos_token }}` once, and a tokenizer that adds a BOS on encode adds none here.
Rendering to text and then calling `tokenizer(text)` would give two; `preflight` checks the tokenized rows. String
(non-conversational) prompt/completion and text rows are encoded with the tokenizer's defaults and get its own BOS.

A tokenizer whose own template is byte-identical to one TRL knows (Llama 3, Qwen2.5, Gemma, ...) keeps it: with
assistant-only loss TRL swaps in its training variant by itself (`get_training_chat_template`); nothing here
replaces a template unless `chat_template:` asks for it.

`chat_template:` (and TRL's `chat_template_path:`) takes a bundled template's name, a .jinja file, a tokenizer
folder holding one, or the template itself inline (how the alignment-handbook's recipes give it). A given template
without `{% generation %}` markers that is byte-identical to a published one instructkit knows
(`templates/training/<name>.jinja`, e.g. zephyr-7b-beta's) is replaced by that one's training variant, which renders
the same text with the markers (the same rule as TRL's for the templates it knows), and the log says so.
"""

from __future__ import annotations

from pathlib import Path

from instructkit.errors import InstructkitError, close_match
from instructkit.log import log

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TRAINING_VARIANTS_DIR = TEMPLATES_DIR / "training"

# Control tokens of each bundled template that must be single tokens. mistral, zephyr and alpaca use plain-text
# markers plus the tokenizer's own bos/eos, so a base model needs nothing new for them.
TEMPLATE_TOKENS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "qwen2_5": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
}

# A probe conversation: the answer is a string no template adds or changes.
_QUESTION, _ANSWER = "Name a colour.", "Blue is a colour."


def bundled_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


def is_inline(value: str) -> bool:
    """A template given as its Jinja text rather than a name or a path."""
    return "{{" in value or "{%" in value


def _bundled_name(name_or_path: str) -> str | None:
    """The bundled template `name_or_path` names, or None when it is a file path or the template itself."""
    if is_inline(name_or_path):
        return None
    path = Path(name_or_path).expanduser()
    return None if path.suffix == ".jinja" or path.exists() or "/" in name_or_path else name_or_path


def describe(value: str) -> str:
    """How a chat_template value is named in messages: inline ones by their length, not their whole text."""
    return f"the inline template ({len(value)} characters)" if is_inline(value) else value


def chat_template_text(value: str) -> str:
    """The template text of a chat_template value: a bundled template's name (e.g. 'chatml'), a .jinja file, a
    tokenizer folder with chat_template.jinja (or a template in tokenizer_config.json), or the Jinja text itself."""
    if is_inline(value):
        return value
    name = _bundled_name(value)
    if name is None:
        return _template_file(Path(value).expanduser(), value)
    bundled = TEMPLATES_DIR / f"{name}.jinja"
    if not bundled.is_file():
        near = close_match(value, bundled_names())
        raise InstructkitError(f"unknown chat template {value!r}" + (f" — did you mean {near!r}?" if near else "."),
                               fix=f"use one of: {', '.join(bundled_names())}, a .jinja path, or the template "
                                   "itself (Jinja text).")
    return bundled.read_text()


def _template_file(path: Path, value: str) -> str:
    import json

    if path.is_dir():
        config = path / "tokenizer_config.json"
        if (path / "chat_template.jinja").is_file():
            return (path / "chat_template.jinja").read_text()
        if config.is_file() and isinstance(json.loads(config.read_text()).get("chat_template"), str):
            return json.loads(config.read_text())["chat_template"]
        raise InstructkitError(f"chat template folder {value} holds no chat_template.jinja and no chat_template in "
                               "tokenizer_config.json.", fix="point at the .jinja file itself.")
    if not path.is_file():
        raise InstructkitError(f"chat template file {value} does not exist.",
                               fix="pass a .jinja path, a bundled template's name, or the template itself.")
    return path.read_text()


def template_problem(value: str) -> str | None:
    """What is wrong with a chat_template value (unknown name, missing file, Jinja that does not compile), or None."""
    from jinja2 import TemplateSyntaxError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        text = chat_template_text(value)
    except InstructkitError as err:
        return f"{err.message.rstrip('.')} — fix: {err.fix}"
    try:
        _compile_jinja_template(text)
    except TemplateSyntaxError as err:
        line = text.splitlines()[err.lineno - 1].strip() if 0 < (err.lineno or 0) <= len(text.splitlines()) else ""
        return (f"{describe(value)} is not valid Jinja (line {err.lineno}: {err.message}; the line reads "
                f"{line[:80]!r}) — fix: close every {{% ... %}} / {{{{ ... }}}} and block ({{% if %}} ... "
                "{% endif %}), or give a bundled template's name or a .jinja file")
    return None


def training_variant(template: str) -> tuple[str, str] | None:
    """(name, text) of the training variant of a published template without generation markers that `template` is
    byte-identical to, or None."""
    for original in sorted(TRAINING_VARIANTS_DIR.glob("*.jinja")):
        if original.stem.endswith("_training"):
            continue
        if original.read_text().strip() == template.strip():
            variant = original.with_name(f"{original.stem}_training.jinja")
            return original.stem, variant.read_text()
    return None


def set_chat_template(tokenizer, name_or_path: str) -> list[int]:
    """Put a template on `tokenizer`; add the bundled template's control tokens it lacks. Returns their new ids.

    New ids need new embedding rows (`model.resize_token_embeddings(len(tokenizer))`) that are trained. A published
    template without generation markers that instructkit has a training variant of gets that variant (see the
    module docstring).
    """
    from trl.chat_template_utils import has_generation_markers

    tokenizer.chat_template = chat_template_text(name_or_path)
    variant = None if has_generation_markers(tokenizer.chat_template) else training_variant(tokenizer.chat_template)
    if variant:
        tokenizer.chat_template = variant[1]
        log(f"chat template: {describe(name_or_path)} is {variant[0]}'s own, which has no {{% generation %}} markers; "
            f"its training variant (templates/training/{variant[0]}_training.jinja: the same text, with the markers) "
            "is used, so assistant-only loss trains the assistant turns")
    vocab = tokenizer.get_vocab()
    missing = [t for t in TEMPLATE_TOKENS.get(_bundled_name(name_or_path) or "", ()) if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    try:
        render(tokenizer, _probe())
    except Exception as err:  # jinja's TemplateError, or UndefinedError for a token the tokenizer lacks
        raise InstructkitError(f"chat template {describe(name_or_path)} does not render with this tokenizer "
                               f"({type(err).__name__}: {err}).",
                               fix="a template using bos_token/eos_token needs a tokenizer that defines them; "
                                   "check the template or pick another bundled one.") from None
    return tokenizer.convert_tokens_to_ids(missing)


def _probe(answer: bool = True, follow_up: bool = True) -> list[dict]:
    chat = [{"role": "user", "content": _QUESTION}]
    if answer:
        chat.append({"role": "assistant", "content": _ANSWER})
        if follow_up:  # some templates close an assistant turn only when another message follows
            chat.append({"role": "user", "content": _QUESTION})
    return chat


def render(tokenizer, messages: list[dict], chat_template: str | None = None, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, chat_template=chat_template, **kwargs)


def end_of_turn_token(tokenizer, chat_template: str | None = None) -> str | None:
    """The special token that closes an assistant turn: the one right after the answer in a rendered conversation.

    None when the template puts no special token there (the model would have nothing to stop on).
    """
    text = render(tokenizer, _probe(), chat_template)
    if _ANSWER not in text:
        return None
    after = text[text.index(_ANSWER) + len(_ANSWER):].lstrip(" ")  # a newline here means no end-of-turn token
    specials = set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens)
    return next((t for t in sorted(specials, key=len, reverse=True) if t and after.startswith(t)), None)


def stop_token_ids(tokenizer) -> list[int]:
    """Ids generation stops on: the template's end-of-turn token, then eos (when it differs)."""
    eot = end_of_turn_token(tokenizer) if tokenizer.chat_template else None
    ids = [tokenizer.convert_tokens_to_ids(eot) if eot else None, tokenizer.eos_token_id]
    return list(dict.fromkeys(i for i in ids if i is not None))


def renders_bos(tokenizer, chat_template: str | None = None) -> bool:
    bos = tokenizer.bos_token
    return bool(bos) and render(tokenizer, _probe(), chat_template).startswith(bos)


def generation_prompt_problem(tokenizer, training_template: str | None = None) -> str | None:
    """What is wrong with how a prompt is rendered for generation, or None.

    The prompt rendered with `add_generation_prompt=True` (the tokenizer's template, as at inference) must be a
    prefix of the conversation rendered for training (`training_template`, default the same), followed directly by
    the answer: then what the model sees at inference is what it was trained on, and what follows is the answer.
    """
    prompt = render(tokenizer, _probe(answer=False), add_generation_prompt=True)
    full = render(tokenizer, _probe(follow_up=False), training_template)
    if not full.startswith(prompt):
        return (f"the prompt rendered for generation ends {prompt[-40:]!r}, but in training the conversation "
                f"renders {full[:len(prompt)][-40:]!r} there")
    rest = full[len(prompt):]
    if not rest.lstrip(" ").startswith(_ANSWER):
        return (f"after the generation prompt, training renders {rest[:40]!r} before the answer, so "
                f"add_generation_prompt does not open the assistant turn")
    return None


def training_template(tokenizer) -> str | None:
    """The template TRL's assistant-only loss renders with, or None when it has none.

    The tokenizer's own if it has `{% generation %}` markers, else TRL's training variant of a template it knows
    (exact match), as `SFTTrainer.__init__` decides.
    """
    from trl.chat_template_utils import (
        get_training_chat_template,
        has_generation_markers,
    )

    template = tokenizer.chat_template
    if not template:
        return None
    if has_generation_markers(template):
        return template if isinstance(template, str) else template["default"]
    try:
        return get_training_chat_template(tokenizer)
    except ValueError:
        return None
