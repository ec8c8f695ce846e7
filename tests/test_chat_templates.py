"""Bundled chat templates: TRL's real masks, token by token, train exactly each answer and its end-of-turn token."""

import pytest

from conftest import make_tokenizer, sft_trainer
from instructkit import chat_templates
from instructkit.data.formats import convert_row
from instructkit.data.report import DataReport
from instructkit.errors import InstructkitError
from instructkit.training import preflight
from instructkit.training.sft import loss_settings

TEMPLATES = chat_templates.bundled_names()
END_OF_TURN = {"alpaca": "</s>", "chatml": "<|im_end|>", "gemma": "<end_of_turn>", "llama3": "<|eot_id|>",
               "llama3_1_tools": "<|eot_id|>", "mistral": "</s>", "qwen2_5": "<|im_end|>",
               "qwen2_5_tools": "<|im_end|>", "zephyr": "</s>"}
ADDED = {"chatml": ["<|im_start|>", "<|im_end|>"], "qwen2_5": ["<|im_start|>", "<|im_end|>"],
         "qwen2_5_tools": ["<|im_start|>", "<|im_end|>"],
         "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
         "llama3_1_tools": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
         "gemma": ["<start_of_turn>", "<end_of_turn>"]}
WITH_BOS = {"alpaca", "gemma", "llama3", "llama3_1_tools", "mistral", "zephyr"}
LEAD = {"mistral": " "}  # Llama 2 / Mistral: the answer follows "[/INST]" after a space, which the model generates

SYSTEM = "You are terse."
# Each source format: a single-turn row and a multi-turn row with a system prompt (alpaca has one turn by design).
ROWS = {
    "alpaca": [{"instruction": "Reverse cat.", "output": "tac"},
               {"instruction": "Add 1 and 2.", "input": "", "output": "3", "system": SYSTEM}],
    "sharegpt": [{"conversations": [{"from": "human", "value": "Reverse cat."}, {"from": "gpt", "value": "tac"}]},
                 {"conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": "Add 1 and 2."},
                                    {"from": "gpt", "value": "3"}, {"from": "human", "value": "Now add 4 and 5."},
                                    {"from": "gpt", "value": "9"}]}],
    "messages": [{"messages": [{"role": "user", "content": "Upper case dog."},
                               {"role": "assistant", "content": "DOG"}]},
                 {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Add 1 and 2."},
                               {"role": "assistant", "content": "3"}, {"role": "user", "content": "Thanks!"},
                               {"role": "assistant", "content": "hello world"}]}],
    "prompt_completion": [
        {"prompt": [{"role": "user", "content": "Reverse cat."}],
         "completion": [{"role": "assistant", "content": "tac"}]},
        {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Add 1 and 2."},
                    {"role": "assistant", "content": "3"}, {"role": "user", "content": "Now add 4 and 5."}],
         "completion": [{"role": "assistant", "content": "9"}]}],
}


def expected_spans(tok, template, messages, trained_from):
    """Character spans of `lead + content + end-of-turn` of every trained assistant turn, found from the text alone:
    the answer starts where the conversation up to it, rendered with the generation prompt, ends."""
    text = chat_templates.render(tok, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or i < trained_from:
            continue
        prompt = chat_templates.render(tok, messages[:i], add_generation_prompt=True)
        piece = LEAD.get(template, "") + m["content"] + END_OF_TURN[template]
        assert text.startswith(prompt) and text[len(prompt):].startswith(piece), (template, text)
        spans.append((len(prompt), len(prompt) + len(piece)))
    return text, spans


@pytest.mark.parametrize("source", list(ROWS))
@pytest.mark.parametrize("template", TEMPLATES)
def test_trained_tokens_are_exactly_each_answer_and_its_end_of_turn(template, source):
    tok = make_tokenizer(bos_on_encode=True)  # like Llama: plain encoding would prepend <s>
    chat_templates.set_chat_template(tok, template)
    rows = [convert_row(r, source) for r in ROWS[source]]
    trainer, report = sft_trainer(tok, rows, source)
    assert len(trainer.train_dataset) == len(rows)
    for row, prepared in zip(rows, trainer.train_dataset):
        messages = row.get("messages") or row["prompt"] + row["completion"]
        text, spans = expected_spans(tok, template, messages, len(row.get("prompt", [])))
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert prepared["input_ids"] == enc["input_ids"]  # TRL: the rendered text, no tokenizer-added BOS
        for token, label, (start, end) in zip(enc["input_ids"], prepared["labels"], enc["offset_mapping"]):
            inside = any(start < b and end > a for a, b in spans)
            assert label == (token if inside else -100), (template, source, tok.decode([token]), text)
        trained = [t for t, label in zip(prepared["input_ids"], prepared["labels"]) if label != -100]
        assert tok.decode(trained) == "".join(text[a:b] for a, b in spans)
        n_bos = next(i for i, t in enumerate(prepared["input_ids"]) if t != tok.bos_token_id)
        assert n_bos == (1 if template in WITH_BOS else 0)
    preflight.check(trainer, report)  # and the preflight checks agree


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_tokens_end_of_turn_and_generation_prompt(template):
    tok = make_tokenizer()
    new = chat_templates.set_chat_template(tok, template)
    assert tok.convert_ids_to_tokens(new) == ADDED.get(template, [])
    assert chat_templates.set_chat_template(tok, template) == []  # nothing added twice
    eot = chat_templates.end_of_turn_token(tok)
    assert eot == END_OF_TURN[template]
    assert chat_templates.stop_token_ids(tok) == list(dict.fromkeys([tok.convert_tokens_to_ids(eot), tok.eos_token_id]))
    assert chat_templates.generation_prompt_problem(tok) is None
    assert chat_templates.renders_bos(tok) == (template in WITH_BOS)
    system_first = chat_templates.render(tok, [{"role": "system", "content": SYSTEM},
                                              {"role": "user", "content": "Reverse cat."}], add_generation_prompt=True)
    assert SYSTEM in system_first


def test_qwen2_5_adds_its_default_system_prompt_and_gemma_mistral_fold_system_into_the_user_turn():
    user = [{"role": "user", "content": "hi"}]
    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "qwen2_5")
    assert chat_templates.render(tok, user).startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    folded = {"gemma": "<s><start_of_turn>user\nBe brief.\n\nhi", "mistral": "<s>[INST] Be brief.\n\nhi"}
    for template, start in folded.items():
        tok = make_tokenizer()
        chat_templates.set_chat_template(tok, template)
        assert chat_templates.render(tok, [{"role": "system", "content": "Be brief."}] + user).startswith(start)


def test_unknown_template_names_the_bundled_ones(tmp_path):
    with pytest.raises(InstructkitError, match="use one of: alpaca, chatml, gemma, llama3, llama3_1_tools, mistral, "
                                               "qwen2_5, qwen2_5_tools, zephyr"):
        chat_templates.chat_template_text("chatlm")
    with pytest.raises(InstructkitError, match="does not exist"):
        chat_templates.chat_template_text(str(tmp_path / "mine.jinja"))


def test_conversations_no_way_can_mask_stop_before_trl():
    """No markers, no TRL variant, and the generation prompt does not open the assistant turn: prefix rendering
    would train the role label the template prints, so the run stops before anything loads."""
    tok = make_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
    args = type("Args", (), {})()
    with pytest.raises(InstructkitError, match=r"cannot find the turns: with add_generation_prompt it does not open "
                                               r"the assistant turn.*Fix: set chat_template: to a bundled template"):
        vars(args).update(loss_settings(args, DataReport(format="messages"), tok))


def test_a_stock_template_without_markers_is_masked_by_rendering_prefixes():
    """No markers and no TRL variant, but prefixes render stably: instructkit tokenizes and masks (TRL's own loss
    options off), the template untouched."""
    tok = make_tokenizer()
    tok.chat_template = chat_templates.chat_template_text("chatml").replace("{%- generation -%}", "").replace(
        "{%- endgeneration -%}", "")
    tok.add_special_tokens({"extra_special_tokens": ADDED["chatml"]})
    args = type("Args", (), {})()
    vars(args).update(loss_settings(args, DataReport(format="messages"), tok))
    assert not args.assistant_only_loss and not args.completion_only_loss


def test_a_tokenizer_template_trl_knows_is_left_for_trl_to_swap():
    """Byte-identical to TRL's Llama 3 template: no markers, but TRL has a training variant that trains exactly each
    answer and its end of turn; we don't replace it."""
    from pathlib import Path

    import trl

    tok = make_tokenizer()
    tok.add_special_tokens({"extra_special_tokens": ADDED["llama3"]})
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "llama3.jinja").read_text()
    args = type("Args", (), {})()
    vars(args).update(loss_settings(args, DataReport(format="messages"), tok))
    assert args.assistant_only_loss
    assert chat_templates.training_template(tok) != tok.chat_template  # TRL's `_training` variant
