"""Every launch config loads with accelerate's own loader; the ones a CPU can run are run with 2 processes."""

import json
from pathlib import Path

import pytest

from conftest import ROOT, launch
from test_recipes import assert_ok

CONFIGS = sorted((ROOT / "accelerate_configs").glob("*.yaml"))
EXPECTED = {  # file: (distributed_type, extra check)
    "single_gpu": ("NO", lambda c: c.num_processes == 1),
    "ddp": ("MULTI_GPU", lambda c: c.num_processes == 2),
    "deepspeed_zero2": ("DEEPSPEED", lambda c: c.deepspeed_config["zero_stage"] == 2),
    "deepspeed_zero3": ("DEEPSPEED", lambda c: c.deepspeed_config["zero_stage"] == 3
                        and c.deepspeed_config["zero3_save_16bit_model"]),
    "deepspeed_zero3_offload": ("DEEPSPEED", lambda c: c.deepspeed_config["offload_param_device"] == "cpu"
                                and c.deepspeed_config["zero3_save_16bit_model"]),
    "fsdp": ("FSDP", lambda c: c.fsdp_config["fsdp_version"] == 2
             and c.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"),
    "fsdp_qlora": ("FSDP", lambda c: c.fsdp_config["fsdp_version"] == 2),
    "multi_node": ("MULTI_GPU", lambda c: c.num_machines == 2 and c.main_process_port == 29500),
}
FEW = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--logging_steps", "1"]


def test_every_config_is_covered_and_loads_with_accelerates_loader():
    from accelerate.commands.config.config_args import load_config_from_file

    assert {c.stem for c in CONFIGS} == set(EXPECTED)
    for path in CONFIGS:
        config = load_config_from_file(str(path))
        kind, check = EXPECTED[path.stem]
        assert config.distributed_type.value == kind, path.name
        assert check(config), path.name
        assert config.mixed_precision == "no", f"{path.name}: precision is the recipe's choice (bf16 / fp32)"


def test_sharded_launches_store_4bit_weights_in_the_compute_dtype(monkeypatch):
    from trl import ModelConfig

    from instructkit.config.resolved import RecipeConfig, resolve_model
    from instructkit.modeling.quantization import qlora_config

    def quantization():  # as a QLoRA recipe resolves its model keys, then builds the 4-bit config
        model_args = ModelConfig(model_name_or_path="x", dtype="bfloat16", load_in_4bit=True, use_peft=True)
        return qlora_config(resolve_model(RecipeConfig(None, None, model_args)).model)

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    q = quantization()
    assert str(q.bnb_4bit_quant_storage) == "torch.bfloat16"
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # replicated weights: bitsandbytes' default storage
    q = quantization()
    assert str(q.bnb_4bit_quant_storage) == "torch.uint8"


def reload_and_generate(out: Path, adapter: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if adapter:
        from peft import AutoPeftModelForCausalLM
        from safetensors.torch import load_file

        weights = load_file(out / "adapter_model.safetensors")
        assert any("lora_B" in k and v.numel() and v.abs().sum() > 0 for k, v in weights.items()), "adapter trained"
        model = AutoPeftModelForCausalLM.from_pretrained(out)
    else:
        model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok.apply_chat_template([{"role": "user", "content": "Reverse cat."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert model.generate(**enc, max_new_tokens=3, do_sample=False).shape[1] > enc["input_ids"].shape[1]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["ddp", "deepspeed_zero2", "deepspeed_zero3"])
@pytest.mark.parametrize("recipe", ["sft_full", "sft_lora"])
def test_two_process_launch_trains_saves_and_reloads(config, recipe, tmp_path, embedded):
    """Both ranks train together (DeepSpeed's own batch-size check needs the 2-process state), held-out exact
    match is shared out over the ranks (under ZeRO-3 with the weights gathered), and what is saved reloads."""
    out = tmp_path / "out"
    n = 7  # odd: one rank gets a padding copy that must not be counted
    proc = launch(recipe, *FEW, "--eval_exact_match", "true", "--eval_max_samples", str(n), "--output_dir", str(out),
                  config=config, timeout=900)
    assert_ok(proc)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["machine"]["processes"] == 2
    for when in ("before", "after"):
        assert {split: r["n"] for split, r in metrics["exact_match"][when].items()} == {"test": n, "test_phrasings": n}
    reload_and_generate(out, adapter=recipe == "sft_lora")


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_at_the_same_global_batch(tmp_path, embedded):
    """Same seed, same global batch (1 x 8 rows vs 2 x 4 rows): the same data per step, the same loss curve."""
    losses = {}
    for n, per_device in ((1, "8"), (2, "4")):
        out = tmp_path / f"p{n}"
        proc = launch("sft_full", "--max_steps", "5", "--per_device_train_batch_size", per_device,
                      "--eval_exact_match", "false", "--logging_steps", "1", "--output_dir", str(out),
                      config="single_gpu" if n == 1 else "ddp", timeout=900)
        assert_ok(proc)
        history = json.loads((out / "metrics.json").read_text())["log_history"]
        losses[n] = [h["loss"] for h in history if "loss" in h]
    assert len(losses[1]) == len(losses[2]) == 5
    for step, (one, two) in enumerate(zip(losses[1], losses[2]), 1):
        assert abs(one - two) <= 0.01 * one, f"step {step}: loss {one} with 1 process, {two} with 2 (per step: {losses})"
