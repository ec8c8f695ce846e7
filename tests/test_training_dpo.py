"""The DPO recipe launched for real, chained from SFT outputs (a full model folder and an adapter folder)."""

import json

import pytest

from conftest import launch
from test_recipes import FEW_STEPS, assert_ok


@pytest.fixture(scope="module")
def sft_outputs(tmp_path_factory, embedded):
    """A full SFT model folder and an SFT LoRA adapter folder, a few steps each."""
    root = tmp_path_factory.mktemp("sft")
    for recipe in ("sft_full", "sft_lora"):
        assert_ok(launch(recipe, *FEW_STEPS, "--eval_exact_match", "false", "--output_dir", str(root / recipe)))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("start, mode", [("sft_full", []), ("sft_lora", ["--use_peft", "true"]),
                                         ("sft_lora", ["--use_peft", "true", "--load_in_4bit", "true"]),
                                         ("sft_lora", [])])
def test_dpo_chains_from_sft_output(start, mode, sft_outputs, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "dpo"
    proc = launch("dpo", *FEW_STEPS, "--model_name_or_path", str(sft_outputs / start), "--output_dir", str(out),
                  "--eval_max_samples", "4", *mode)
    assert_ok(proc)
    assert "held-out preference pairs: " in proc.stdout and "preflight ok" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["format"] == "preference"
    assert 0.0 <= metrics["eval"]["eval_rewards/accuracies"] <= 1.0
    assert set(metrics["exact_match"]["before"]) == {"test"}
    assert not list(out.glob("*.bin")), "safetensors only"
    AutoTokenizer.from_pretrained(out)
    if "--use_peft" in mode:
        # the new adapter's base is the merged SFT model, saved next to it in full precision
        base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert base == str(out / "merged_base") and (out / "merged_base" / "model.safetensors").is_file()
        from peft import AutoPeftModelForCausalLM

        AutoPeftModelForCausalLM.from_pretrained(out)
    else:
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(out)


def test_dpo_config_rejects_removed_trl_keys():
    from trl import DPOConfig, ModelConfig

    from instructkit.config.arguments import InstructkitArguments
    from instructkit.config.parsing import parse_args as parse_recipe_args
    from instructkit.errors import InstructkitError

    with pytest.raises(InstructkitError, match="max_completion_length.*removed in TRL 0.29 \\(DPO\\): 'max_length'"):
        parse_recipe_args((InstructkitArguments, DPOConfig, ModelConfig), args=["--max_completion_length", "64"])
