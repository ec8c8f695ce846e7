"""Preflight checks on TRL's tokenized rows: each failure stops with its reason and fix."""

import pytest

from conftest import make_tokenizer, sft_trainer
from instructkit import chat_templates
from instructkit.data.formats import convert_row
from instructkit.errors import InstructkitError
from instructkit.training import preflight

CHAT = [{"messages": [{"role": "user", "content": "Reverse cat."}, {"role": "assistant", "content": "tac"}]},
        {"messages": [{"role": "user", "content": "Add 1 and 2."}, {"role": "assistant", "content": "3"}]}]
CHATML = chat_templates.chat_template_text("chatml")


def chatml_tokenizer(template: str = CHATML, **kw):
    tok = make_tokenizer(**kw)
    chat_templates.set_chat_template(tok, "chatml")
    tok.chat_template = template
    return tok


def test_good_rows_pass_and_say_what_was_checked():
    result = preflight.check(*sft_trainer(chatml_tokenizer(), CHAT, "messages"))
    assert result["end_of_turn"] == "<|im_end|>" and result["rows_without_trained"] == 0
    assert preflight.summary(result) == ("preflight ok: 2 training rows, end of turn '<|im_end|>' trained, "
                                         "pad '<pad>', no BOS from the template")


def test_double_bos_from_a_template_that_adds_one_to_a_template_that_has_one():
    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "llama3")
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    with pytest.raises(InstructkitError, match=r"2 training rows start with two or more BOS tokens '<s>'.*"
                                               r"Fix: render \{\{ bos_token \}\} once"):
        preflight.check(*sft_trainer(tok, CHAT, "messages"))


def test_double_bos_from_string_prompts_that_already_start_with_it():
    tok = make_tokenizer(bos_on_encode=True)  # the tokenizer prepends <s> to plain strings
    rows = [{"prompt": "<s>Reverse cat.", "completion": " tac"}, {"prompt": "Add 1 and 2.", "completion": " 3"}]
    with pytest.raises(InstructkitError, match=r"1 training rows start with two or more BOS tokens '<s>' \(rows 0\)"):
        preflight.check(*sft_trainer(tok, rows, "prompt_completion"))


def test_end_of_turn_outside_the_generation_markers_is_refused():
    """TRL only logs a warning for this; the run would train a model that never stops."""
    tok = chatml_tokenizer(CHATML.replace("message['content'] + '<|im_end|>'", "message['content']")
                           .replace("{{- '\\n' -}}\n{%- else", "{{- '<|im_end|>\\n' -}}\n{%- else"))
    assert "{%- endgeneration -%}\n{{- '<|im_end|>\\n' -}}" in tok.chat_template
    with pytest.raises(InstructkitError, match="2 of 2 training rows do not train the end-of-turn token '<|im_end|>'"):
        preflight.check(*sft_trainer(tok, CHAT, "messages"))


def test_a_template_without_an_end_of_turn_token_is_refused():
    tok = chatml_tokenizer(CHATML.replace(" + '<|im_end|>' -}}\n{%- endgeneration", " -}}\n{%- endgeneration"))
    with pytest.raises(InstructkitError, match="closes an assistant turn with no special token"):
        preflight.check(*sft_trainer(tok, CHAT, "messages"))


@pytest.mark.parametrize("pad", ["</s>", "<|im_end|>"])
def test_pad_equal_to_eos_or_end_of_turn_is_refused(pad):
    tok = chatml_tokenizer()
    tok.pad_token = pad
    with pytest.raises(InstructkitError, match=f"the pad token '{pad}' is the eos / end-of-turn token.*"
                                               "Fix: leave pad_token unset"):
        preflight.check(*sft_trainer(tok, CHAT, "messages"))


def test_a_template_that_ignores_add_generation_prompt_is_refused():
    tok = chatml_tokenizer(CHATML.split("{%- if add_generation_prompt")[0])
    with pytest.raises(InstructkitError, match="add_generation_prompt does not open the assistant turn"):
        preflight.check(*sft_trainer(tok, CHAT, "messages"))


def test_no_row_left_with_a_trained_token_is_one_clear_error():
    rows = [convert_row({"instruction": "Reverse cat. " * 20, "output": "tac"}, "alpaca")] * 2
    with pytest.raises(InstructkitError, match=r"no training row has a trained token left: every prompt fills "
                                               r"max_length=16\. Fix: raise max_length"):
        preflight.check(*sft_trainer(chatml_tokenizer(), rows, "alpaca", max_length=16))


def test_packed_rows_are_checked_document_by_document():
    """bfd packing keeps rows whose prompt fills max_length (no trained token): counted, not refused."""
    rows = [convert_row({"instruction": "Reverse cat. " * 30, "output": "tac"}, "alpaca")] + [
        convert_row({"instruction": f"Add {i} and 2.", "output": str(i + 2)}, "alpaca") for i in range(5)]
    trainer, report = sft_trainer(chatml_tokenizer(), rows, "alpaca", max_length=64, packing=True,
                                  per_device_train_batch_size=2)
    assert "seq_lengths" in trainer.train_dataset.column_names and len(trainer.train_dataset) < len(rows)
    result = preflight.check(trainer, report)
    assert result["rows_without_trained"] == 1
    assert "1 packed rows have no trained token" in preflight.summary(result)
