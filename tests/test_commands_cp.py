"""`instructkit cp`: a copied recipe runs from its own folder, outside the repo, and what it trains can be merged."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

CLI = str(Path(sys.executable).with_name("instructkit"))
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def cp(*args, cwd):
    return subprocess.run([CLI, "cp", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cp_copies_the_recipe_its_config_and_launch_configs(tmp_path):
    proc = cp("sft_qlora", "proj", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "proj"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "accelerate_configs/single_gpu.yaml", "configs/sft_qlora.yaml", "sft_qlora.py"]
    assert "run it:  cd proj && accelerate launch sft_qlora.py" in proc.stdout
    script = (dest / "sft_qlora.py").read_text()
    assert "accelerate launch sft_qlora.py  " in script and "recipes/" not in script  # commands fit the copy
    assert (dest / "configs" / "sft_qlora.yaml").read_text().replace("configs/", "recipes/configs/") \
        .replace("accelerate launch sft_qlora", "accelerate launch recipes/sft_qlora") \
        == (ROOT / "recipes" / "configs" / "sft_qlora.yaml").read_text()  # otherwise unchanged

    again = cp("sft_qlora", "proj", cwd=tmp_path)  # a copy is the user's: never overwritten silently
    assert again.returncode == 2 and "already exist" in again.stderr and "--force" in again.stderr
    assert cp("sft_qlora", "proj", "--force", "--launch_configs", "ddp", cwd=tmp_path).returncode == 0
    assert (dest / "accelerate_configs" / "ddp.yaml").is_file()

    wrong = cp("sft_qlor", "x", cwd=tmp_path)
    assert wrong.returncode == 2 and "there is no recipe 'sft_qlor' — did you mean 'sft_qlora'?" in wrong.stderr
    dpo = cp("dpo", "d", cwd=tmp_path)
    assert "reads model_name_or_path: outputs/sft_full, which does not exist in d yet" in dpo.stdout


def test_cp_with_a_per_model_config_copies_it_as_the_default_with_its_launch_config(tmp_path):
    proc = cp("sft_full", "proj", "--config", "llama-3.1-8b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "proj"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "accelerate_configs/deepspeed_zero3.yaml", "accelerate_configs/single_gpu.yaml", "configs/sft_full.yaml",
        "sft_full.py"]
    copied = (dest / "configs" / "sft_full.yaml").read_text()
    shipped = (ROOT / "recipes" / "configs" / "llama-3.1-8b" / "sft_full.yaml").read_text()
    assert "learning_rate: 5.0e-6" in copied and copied.count("\n") == shipped.count("\n")
    assert "accelerate launch --config_file accelerate_configs/deepspeed_zero3.yaml --num_processes 8 sft_full.py " \
           "--config configs/sft_full.yaml" in copied  # its command, rewritten for the copy
    assert "run it:  cd proj && accelerate launch --config_file accelerate_configs/deepspeed_zero3.yaml " \
           "--num_processes 8 sft_full.py" in proc.stdout
    assert "meant for 8 GPUs x 80 GB (deepspeed_zero3.yaml): instructkit estimate --config configs/sft_full.yaml" \
        in proc.stdout
    assert "does not exist" not in proc.stdout  # meta-llama/Llama-3.1-8B is a hub name, not a missing folder
    dpo = cp("dpo", "d", "--config", "qwen2.5-7b", cwd=tmp_path)
    assert "reads model_name_or_path: outputs/qwen2.5-7b/sft_full, which does not exist in d yet" in dpo.stdout
    wrong = cp("sft_full", "x", "--config", "qwen2.5-7", cwd=tmp_path)
    assert wrong.returncode == 2 and "ships no config 'qwen2.5-7' — did you mean 'qwen2.5-7b'?" in wrong.stderr


@pytest.mark.slow
def test_copied_recipe_trains_outside_the_repo_and_its_qlora_adapter_merges(tmp_path, embedded):
    """As a new user: cp, edit the copy, launch it from its folder; then merge what it trained."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from PIL import Image
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path / "proj"
    assert cp("sft_qlora", str(dest), cwd=tmp_path).returncode == 0
    config = dest / "configs" / "sft_qlora.yaml"
    config.write_text(config.read_text().replace("lora_r: 16", "lora_r: 8"))  # the copy's config is what runs
    proc = subprocess.run([ACCELERATE, "launch", "--config_file", "accelerate_configs/single_gpu.yaml", "sft_qlora.py",
                           "--max_steps", "3", "--per_device_train_batch_size", "4", "--eval_max_samples", "8",
                           "--logging_steps", "1", "--sample_generations_steps", "2"],
                          cwd=dest, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"
    out = dest / "outputs" / "sft_qlora"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8

    # samples in the log and samples.jsonl, curves, model card
    assert re.search(r"\[instructkit\] samples at step 2:\n  '.+' -> '.*'", proc.stdout), proc.stdout[-3000:]
    assert "samples at step 3:" in proc.stdout
    assert [json.loads(line)["step"] for line in (out / "samples.jsonl").read_text().splitlines()] == [2] * 4 + [3] * 4
    with Image.open(out / "training_curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 0 and (out / "training_curves.png").stat().st_size > 10_000
    card = (out / "README.md").read_text()
    assert "A QLoRA adapter fine-tuned from the embedded default" in card and "## Sample generations (step 3" in card

    # merge as a user would, from the copy's folder
    merge = subprocess.run([CLI, "merge", "outputs/sft_qlora", "outputs/merged"], cwd=dest, capture_output=True,
                           text=True, timeout=300)
    assert merge.returncode == 0, merge.stderr[-3000:]
    diff = float(re.search(r"max \|logit difference\| merged vs adapter = (\S+)", merge.stdout)[1])
    assert diff < 1e-4
    merged_dir = dest / "outputs" / "merged"
    tok = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert merged.dtype == torch.float32  # full precision, not 4-bit
    assert not any("4bit" in type(m).__name__ for m in merged.modules())
    unmerged = AutoPeftModelForCausalLM.from_pretrained(out)  # the adapter on the fp32 base, unmerged
    enc = tok.apply_chat_template([{"role": "user", "content": "Reverse cat."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert (merged(**enc).logits - unmerged(**enc).logits).abs().max() < 1e-4
    assert "merged from " in (merged_dir / "README.md").read_text()
