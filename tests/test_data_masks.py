"""Assistant masks token by token, on real tokenizers (Qwen2.5, Llama 3 / 3.1) and the toy one: rendering prefixes of
a template without markers finds exactly what the same template with `{% generation %}` markers marks; TRL's Qwen2.5
training variant trains two newlines more per turn; which way the loss resolution takes for each template; TRL
trains exactly the masks instructkit hands it."""

import re

import pytest

from conftest import make_tokenizer, sft_trainer
from families import CONVERSATIONS, chat_rows
from instructkit import chat_templates
from instructkit.data import masks
from instructkit.data.formats import convert_row
from instructkit.data.report import DataReport
from instructkit.errors import InstructkitError
from instructkit.training import preflight
from instructkit.training.sft import mask_method

REAL = {"qwen2_5": "qwen2.5", "qwen2_5_tools": "qwen2.5", "chatml": "qwen2.5", "llama3": "llama3.1",
        "llama3_1_tools": "llama3.1"}  # bundled template -> the family whose tokenizer renders it
TOOL_TEMPLATES = {"qwen2_5_tools", "llama3_1_tools"}
ONE_CALL_A_TURN = {"llama3_1_tools"}  # Llama 3.1's template refuses two calls in one turn


def unmarked(template: str) -> str:
    """The template without its markers: a stock template that renders the same text."""
    return re.sub(r"\{%-?\s*(?:end)?generation\s*-?%\}", "", template)


def trained_runs(tok, ids, mask) -> list[tuple[int, int]]:
    """[start, end) token index runs of trained tokens."""
    runs, start = [], None
    for i, m in enumerate(list(mask) + [0]):
        if m and start is None:
            start = i
        if not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.fixture(scope="module")
def tokenizers(family):
    return {name: family(name).tokenizer() for name in ("qwen2.5", "llama3.1", "llama3")}


def cases():
    for template in chat_templates.bundled_names():
        for name, (messages, tools) in CONVERSATIONS.items():
            if tools and template not in TOOL_TEMPLATES or name == "two_calls" and template in ONE_CALL_A_TURN:
                continue
            yield template, name


@pytest.mark.parametrize("template, conversation", list(cases()))
def test_prefix_rendering_finds_exactly_what_the_markers_mark(template, conversation, tokenizers):
    from trl.chat_template_utils import has_generation_markers

    messages, tools = CONVERSATIONS[conversation]
    if template in REAL:
        tok = tokenizers[REAL[template]]
    else:
        tok = make_tokenizer()
        chat_templates.set_chat_template(tok, template)  # adds the control tokens the toy tokenizer lacks
    marked = chat_templates.chat_template_text(template)
    stock = unmarked(marked)
    assert not has_generation_markers(stock)
    assert chat_templates.render(tok, messages, stock, tools=tools) == chat_templates.render(tok, messages, marked,
                                                                                             tools=tools)
    by_prefix = masks.prefix_masks(tok, messages, tools, chat_template=stock)
    by_markers = masks.marked_masks(tok, messages, tools, chat_template=marked)
    assert by_prefix["input_ids"] == by_markers["input_ids"]
    assert by_prefix["assistant_masks"] == by_markers["assistant_masks"], (template, conversation, [
        tok.decode([t]) for t, a, b in zip(by_prefix["input_ids"], by_prefix["assistant_masks"],
                                           by_markers["assistant_masks"]) if a != b])
    assert masks.prefix_problem(tok, stock) is None


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_qwen25_stock_template_masks_token_by_token(conversation, tokenizers):
    """No BOS; every assistant turn trained from its first content token through its <|im_end|>, nothing else: not the
    newline after '<|im_start|>assistant' (the generation prompt), not the newline after <|im_end|>, no tool result."""
    from trl.chat_template_utils import qwen2_5_chat_template

    tok = tokenizers["qwen2.5"]
    messages, tools = CONVERSATIONS[conversation]
    assert tok.chat_template == qwen2_5_chat_template
    got = masks.prefix_masks(tok, messages, tools)
    ids, mask = got["input_ids"], got["assistant_masks"]
    assert ids == tok.apply_chat_template(messages, tools=tools, return_dict=False)
    assert tok.bos_token is None and ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    im_end, prompt_end = tok.convert_tokens_to_ids("<|im_end|>"), tok.encode("<|im_start|>assistant\n")
    runs = trained_runs(tok, ids, mask)
    answers = [m for m in messages if m["role"] == "assistant"]
    assert len(runs) == len(answers)
    for (start, end), answer in zip(runs, answers):
        assert ids[start - len(prompt_end):start] == prompt_end  # the prompt, up to the generation prompt, untrained
        assert ids[end - 1] == im_end and ids[end] == tok.encode("\n")[0]  # <|im_end|> trained, its newline not
        text = tok.decode(ids[start:end])
        assert text.startswith(answer["content"] or "<tool_call>") and "<|im_start|>" not in text
        for call in answer.get("tool_calls", []):
            assert f'"name": "{call["function"]["name"]}"' in text and "tool_response" not in text
    assert sum(t == im_end and m for t, m in zip(ids, mask)) == len(answers)
    # the same masks as Qwen2.5's template with markers (bundled as qwen2_5_tools)
    assert masks.marked_masks(tok, messages, tools, chat_templates.chat_template_text("qwen2_5_tools")) == got


def test_qwen25_single_turn_ids_and_mask_are_qwens(tokenizers):
    """The ids Qwen2.5-Instruct's tokenizer gives [user "Hi", assistant "Hello!"] (its default system prompt
    included), and exactly 'Hello', '!', '<|im_end|>' trained."""
    tok = tokenizers["qwen2.5"]
    got = masks.prefix_masks(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], None)
    assert got["input_ids"] == [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525,
                                264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 13048, 151645, 198, 151644,
                                77091, 198, 9707, 0, 151645, 198]
    assert [t for t, m in zip(got["input_ids"], got["assistant_masks"]) if m] == [9707, 0, 151645]
    assert got["assistant_masks"][-4:] == [1, 1, 1, 0]  # 'Hello' '!' '<|im_end|>' trained, the final newline not


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_trl_qwen25_training_variant_trains_two_newlines_more_per_turn(conversation, tokenizers):
    from trl.chat_template_utils import qwen2_5_training_chat_template

    tok = tokenizers["qwen2.5"]
    messages, tools = CONVERSATIONS[conversation]
    ours = masks.prefix_masks(tok, messages, tools)
    trl = masks.marked_masks(tok, messages, tools, qwen2_5_training_chat_template)
    assert trl["input_ids"] == ours["input_ids"]
    extra = [tok.decode([t]) for t, a, b in zip(ours["input_ids"], trl["assistant_masks"], ours["assistant_masks"])
             if a and not b]
    missing = [t for t, a, b in zip(ours["input_ids"], trl["assistant_masks"], ours["assistant_masks"]) if b and not a]
    assert extra == ["\n"] * 2 * sum(m["role"] == "assistant" for m in messages) and not missing


@pytest.mark.parametrize("conversation", ["single_turn", "multi_turn_system", "tool_call"])
def test_llama31_stock_template_masks_token_by_token(conversation, tokenizers):
    tok = tokenizers["llama3.1"]
    messages, tools = CONVERSATIONS[conversation]
    got = masks.prefix_masks(tok, messages, tools)
    ids, mask = got["input_ids"], got["assistant_masks"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id and not mask[0]  # one BOS, untrained
    eot, header_end = tok.convert_tokens_to_ids("<|eot_id|>"), tok.convert_tokens_to_ids("<|end_header_id|>")
    runs = trained_runs(tok, ids, mask)
    assert len(runs) == sum(m["role"] == "assistant" for m in messages)
    for start, end in runs:
        assert ids[end - 1] == eot and ids[start - 2] == header_end  # "...assistant<|end_header_id|>\n\n" untrained
        assert "<|start_header_id|>" not in tok.decode(ids[start:end])
    assert masks.marked_masks(tok, messages, tools, chat_templates.chat_template_text("llama3_1_tools")) == got


def test_which_way_each_template_is_masked(tokenizers):
    """TRL's variant where it trains exactly the answers (Llama 3), prefix rendering where it trains more (Qwen2.5) or
    where TRL has none (Llama 3.1), the markers of a marked template as they are."""
    from trl.chat_template_utils import llama3_training_chat_template

    report = DataReport(format="messages", form="messages")
    assert mask_method("auto", report, tokenizers["qwen2.5"]) == "prefix"
    assert mask_method("auto", report, tokenizers["llama3.1"]) == "prefix"
    assert mask_method("auto", report, tokenizers["llama3"]) == "template"
    assert masks.masks_match_prefix(tokenizers["llama3"], llama3_training_chat_template)
    marked = make_tokenizer()
    chat_templates.set_chat_template(marked, "chatml")
    assert mask_method("auto", report, marked) == "template"
    assert mask_method("template", report, tokenizers["qwen2.5"]) == "template"  # asked for: TRL's variant
    prompt_completion = DataReport(format="alpaca", form="prompt_completion")
    assert mask_method("auto", prompt_completion, tokenizers["qwen2.5"]) is None  # TRL's completion mask


def test_a_template_that_renders_earlier_turns_by_what_follows(tokenizers):
    """Qwen3's stock template drops the think block of turns before the last question: prefixes render differently.
    TRL has a training variant (it renders every think block), which auto falls back to; prefix alone cannot."""
    from trl.chat_template_utils import qwen3_chat_template

    tok = tokenizers["qwen2.5"]
    saved, tok.chat_template = tok.chat_template, qwen3_chat_template
    try:
        problem = masks.prefix_problem(tok)
        assert problem.startswith("it renders earlier turns differently depending on what follows")
        report = DataReport(format="messages", form="messages")
        assert mask_method("auto", report, tok) == "template"
        with pytest.raises(InstructkitError, match="rendering prefixes of a conversation cannot find the turns: it "
                                                   "renders earlier turns differently"):
            mask_method("prefix", report, tok)
    finally:
        tok.chat_template = saved


def test_trl_trains_exactly_the_masks_instructkit_hands_it(family):
    """The stock Qwen2.5 template through a real SFTTrainer: rows instructkit tokenized (input_ids + assistant_masks),
    TRL's labels equal to those masks, tool rows and content parts included; pad is not eos; preflight agrees."""
    from transformers import AutoModelForCausalLM

    fam = family("qwen2.5")
    tok = fam.tokenizer()
    assert tok.pad_token_id != tok.eos_token_id
    rows = [convert_row(r, "messages") for r in chat_rows()]
    trainer, report = sft_trainer(tok, rows, "messages", model=AutoModelForCausalLM.from_pretrained(fam.model_dir))
    assert not trainer.args.assistant_only_loss and trainer.chat_template is None  # TRL swaps in nothing
    tokenized = trainer.instructkit_tokenized
    assert tokenized is not None and len(trainer.train_dataset) == len(rows)
    for row, ours, prepared in zip(rows, tokenized, trainer.train_dataset):
        expected = masks.prefix_masks(tok, row["messages"], row.get("tools"))
        assert ours == expected and prepared["input_ids"] == expected["input_ids"]
        assert [label != -100 for label in prepared["labels"]] == [bool(m) for m in expected["assistant_masks"]]
    # tool arguments survive storage exactly (no keys of the other rows' calls merged in as nulls)
    assert '{"name": "add", "arguments": {"x": 1, "y": 2}}' in tok.decode(tokenized[-1]["input_ids"])
    assert "null" not in tok.decode(tokenized[-1]["input_ids"])
    result = preflight.check(trainer, report, tokenized)
    assert result["end_of_turn"] == "<|im_end|>" and result["bos"] is None and result["pad"] == "<|endoftext|>"


def test_text_rows_train_every_token_next_to_conversations():
    from instructkit.data.storage import as_arrow

    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "chatml")
    rows = [convert_row(r, "messages") for r in chat_rows(tools=False)] + [{"text": "hello world the answer is"}] * 2
    trainer, report = sft_trainer(tok, rows, "mixture")
    assert report.form == "messages+text" and trainer.instructkit_tokenized is not None
    texts = [r for r in trainer.train_dataset if r["input_ids"][0] == tok.bos_token_id]  # the tokenizer's own BOS
    assert len(texts) == 2 and all(all(label != -100 for label in r["labels"]) for r in texts)  # every token
    assert texts[0]["input_ids"][-1] == tok.eos_token_id  # eos appended, as TRL ends text rows
    counts = masks.token_counts(as_arrow(rows), trainer.instructkit_tokenized)
    assert counts["text"]["rows"] == 2 and counts["text"]["trained"] == counts["text"]["tokens"]
    assert 0 < counts["conversations"]["trained"] < counts["conversations"]["tokens"]
    preflight.check(trainer, report, trainer.instructkit_tokenized)
