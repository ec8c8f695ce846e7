"""`instructkit merge`: adapter + full-precision base -> one plain model with the adapter's logits, checked."""

import json
import re

import pytest


@pytest.fixture(scope="module")
def adapter(embedded, tmp_path_factory):
    """A LoRA adapter on the embedded base with random (non-zero) weights, saved as a run saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(embedded.model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    path = tmp_path_factory.mktemp("merge") / "adapter"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(embedded.model_dir).save_pretrained(path)
    return path


def logits(model, tok, text="Reverse cat."):
    import torch

    enc = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(**enc).logits


def test_merged_model_reloads_plainly_with_the_adapters_logits(adapter, embedded, tmp_path, capsys):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructkit.commands.main import main

    out = tmp_path / "merged"
    main(["merge", str(adapter), str(out)])
    printed = capsys.readouterr().out
    reported = float(re.search(r"max \|logit difference\| merged vs adapter = (\S+) over (\d+) tokens", printed)[1])
    record = json.loads((out / "merge.json").read_text())
    assert reported == pytest.approx(record["check"]["max_abs_logit_diff"], rel=1e-2) and reported < 1e-4
    assert record["dtype"] == "float32" and record["base"] == str(embedded.model_dir)

    assert not (out / "adapter_config.json").exists() and not list(out.glob("*.bin"))
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    tok = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForCausalLM.from_pretrained(out)  # a plain model: no PEFT needed to load it
    unmerged = AutoPeftModelForCausalLM.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(embedded.model_dir)
    assert (logits(merged, tok) - logits(unmerged, tok)).abs().max() < 1e-4
    assert (logits(merged, tok) - logits(base, tok)).abs().max() > 1e-2  # the adapter is in there
    assert merged.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


def test_merge_refuses_what_is_not_an_adapter_and_a_failed_check_saves_nothing(adapter, embedded, tmp_path,
                                                                              monkeypatch, capsys):
    from instructkit.commands.main import main
    from instructkit.modeling import merging

    with pytest.raises(SystemExit) as exit_info:
        main(["merge", str(embedded.model_dir), str(tmp_path / "m1")])
    assert exit_info.value.code == 2
    assert f"error: {embedded.model_dir} is not a LoRA adapter folder: it holds no adapter_config.json" \
        in capsys.readouterr().err

    monkeypatch.setattr(merging, "tolerance", lambda dtype, scale: -1.0)  # any difference fails the check
    with pytest.raises(SystemExit):
        main(["merge", str(adapter), str(tmp_path / "m2")])
    assert "nothing was saved to" in capsys.readouterr().err and not (tmp_path / "m2").exists()


PARITY_ROWS = {
    "prompt_completion": [
        {"prompt": [{"role": "user", "content": "Reverse cat."}], "completion": [{"role": "assistant", "content": "tac"}]},
        {"prompt": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Add 3 and 4."}],
         "completion": [{"role": "assistant", "content": "7"}]}],
    "messages": [
        {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Add 1 and 2."},
                      {"role": "assistant", "content": "3"}, {"role": "user", "content": "Now add 4 and 5."},
                      {"role": "assistant", "content": "9"}]}],
}


def test_the_merged_folder_makes_vllm_render_and_stop_as_training_did(adapter, tmp_path, capsys):
    """Without vLLM installed: what `vllm serve` does with the folder (the command merge prints) — the prompt text
    from the folder's chat template with the generation prompt, tokenized without added special tokens, and a stop
    on the tokenizer's eos plus generation_config.json's eos_token_id — is token for token what TRL trained on: the
    prompt is the training row up to the last trained answer, and the answer's last trained token is a stop token
    that appears nowhere earlier in the answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from conftest import sft_trainer
    from instructkit.commands.main import main

    out = tmp_path / "merged"
    main(["merge", str(adapter), str(out)])
    printed = capsys.readouterr().out
    assert f"serve it on GPUs with vLLM (same chat template, stops at the end of turn): vllm serve {out} " \
           "--served-model-name merged --generation-config auto --dtype bfloat16" in printed
    assert f"serve it here: instructkit serve {out}" in printed
    tok, generation = AutoTokenizer.from_pretrained(out), GenerationConfig.from_pretrained(out)
    eos = generation.eos_token_id
    vllm_stops = {tok.eos_token_id} | ({eos} if isinstance(eos, int) else set(eos))
    assert tok.convert_tokens_to_ids("<|im_end|>") in vllm_stops
    checked = 0
    for fmt, rows in PARITY_ROWS.items():
        trainer, _ = sft_trainer(tok, rows, fmt, model=AutoModelForCausalLM.from_pretrained(out))
        for row, prepared in zip(rows, trainer.train_dataset):
            conversation = row.get("messages") or row["prompt"] + row["completion"]
            trained = [i for i, label in enumerate(prepared["labels"]) if label != -100]
            start = max(i for i in trained if i - 1 not in trained)  # where the last trained answer begins
            text = tok.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
            vllm_prompt = tok(text, add_special_tokens=False)["input_ids"]
            assert vllm_prompt == prepared["input_ids"][:start], (fmt, text)
            ours = tok.apply_chat_template(conversation[:-1], add_generation_prompt=True)["input_ids"]
            assert ours == vllm_prompt  # instructkit serve / generate / chat see the same prompt
            answer = prepared["input_ids"][start:trained[-1] + 1]
            assert answer[-1] in vllm_stops and not vllm_stops & set(answer[:-1]), tok.decode(answer)
            assert tok.decode(answer[:-1]) == conversation[-1]["content"]
            checked += 1
    assert checked == 3
