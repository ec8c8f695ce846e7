"""The real tokenizer families the tests use are the real ones: ids, special tokens and chat renders as the models'
own tokenizers give them (tests/families.py builds them offline from registry packages)."""

import pytest


@pytest.fixture(scope="module")
def qwen(family):
    return family("qwen2.5").tokenizer()


def test_qwen25_encodes_as_qwen_does(qwen):
    assert qwen("Hello world, 12345")["input_ids"] == [9707, 1879, 11, 220, 16, 17, 18, 19, 20]  # single digits
    assert (qwen.bos_token, qwen.eos_token, qwen.pad_token, qwen.unk_token) == (None, "<|im_end|>", "<|endoftext|>",
                                                                              None)
    assert qwen.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                                       "<|file_sep|>"]) == [151643, 151644, 151645, 151657, 151658, 151664]
    assert len(qwen) == 151665 and "<tool_call>" not in qwen.all_special_tokens  # added, not special (as Qwen's)
    ids = qwen.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                                   return_dict=False)
    assert ids == [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950,
                   17847, 13, 151645, 198, 151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198, 9707, 0, 151645,
                   198]
    assert qwen("\u2126")["input_ids"] == qwen("\u03a9")["input_ids"]  # NFC: the Ohm sign is the capital omega


def test_qwen25_template_is_the_stock_one_trl_knows(qwen):
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers, qwen2_5_chat_template

    assert qwen.chat_template == qwen2_5_chat_template and not has_generation_markers(qwen.chat_template)
    assert get_training_chat_template(qwen) is not None  # TRL recognizes it (and would swap in qwen2_5_training)


@pytest.mark.parametrize("version, template", [("3.1", "llama3_1"), ("3", "llama3")])
def test_llama3_encodes_as_meta_does(family, version, template):
    import trl.chat_template_utils as ctu

    tok = family("llama" + version).tokenizer()
    assert tok("Hello world")["input_ids"] == [128000, 9906, 1917]  # BOS on plain encoding, as Meta's
    assert tok.convert_tokens_to_ids(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]) \
        == [128000, 128006, 128007, 128009]
    assert tok.eos_token == "<|eot_id|>" and tok.pad_token is None and len(tok) == 128256
    assert tok.chat_template == getattr(ctu, f"{template}_chat_template")
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                                  return_dict=False)
    assert ids[:2] == [128000, 128006] and ids.count(128000) == 1 and ids[-1] == 128009  # one BOS, from the template


def test_mistral_sentencepiece_vocabulary(family):
    tok = family("mistral").tokenizer()
    assert tok("Hello world")["input_ids"] == [1, 22557, 1526]  # <s> then Mistral 7B v0.1's pieces
    assert (tok.bos_token, tok.eos_token, len(tok)) == ("<s>", "</s>", 32000)


@pytest.mark.parametrize("name, architecture, rows", [("qwen2.5", "Qwen2ForCausalLM", 151936),
                                                     ("llama3.1", "LlamaForCausalLM", 128256),
                                                     ("mistral", "MistralForCausalLM", 32000),
                                                     ("smollm2", "LlamaForCausalLM", 32000)])
def test_tiny_models_are_tiny_and_of_the_family(family, name, architecture, rows):
    import json

    config = json.loads((family(name).model_dir / "config.json").read_text())
    assert config["architectures"] == [architecture] and config["vocab_size"] == rows
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2 and config["tie_word_embeddings"]
