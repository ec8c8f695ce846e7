"""Peak memory of full / LoRA / QLoRA fine-tuning on a randomly initialised Qwen2.5-0.5B-shaped model (494 M
parameters), a few steps each through the recipes, each in its own process; and `instructkit estimate`'s prediction
for the same config next to it.

Batch 1, max_length 64 (the rows are ~32 tokens), fp32 on CPU (what the recipes choose here); QLoRA = NF4 + double
quantization, fp32 compute. Allocator: see FIXED_MMAP. Measured: the process tree's peak RSS, and from inside the training process
(benchmarks/probe) the bytes held by parameters, gradients and optimizer state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ROOT, WORK, log, run  # noqa: E402

MODES = {"full": "sft_full", "lora": "sft_lora", "qlora": "sft_qlora"}


def config_for(mode: str, model_dir: str, data: str, steps: int) -> Path:
    """The recipe's own YAML with the benchmark's model, data and size: what `estimate` reads too."""
    cfg = yaml.safe_load((ROOT / "recipes" / "configs" / f"{MODES[mode]}.yaml").read_text())
    cfg.update(model_name_or_path=model_dir, dataset_name=data, max_steps=steps, per_device_train_batch_size=1,
               max_length=64, eval_exact_match=False, test_split_size=0, logging_steps=1000,
               output_dir=str(WORK / "runs" / "memory" / mode), overwrite_output_dir=True)
    path = WORK / "runs" / "memory" / f"{mode}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def estimate(config: Path, mode: str, **where) -> dict:
    """`instructkit estimate --config <config> --mode <mode> [--gpus N --gpu-memory M] --json`, called in-process (the
    same function the command runs; a process per call would mostly time the imports)."""
    from instructkit.modeling.memory import estimate as predict

    return json.loads(json.dumps(predict(str(config), mode=mode, **where)))


# glibc raises its mmap threshold after large frees (up to 32 MB), so the per-layer buffers of loading and 4-bit
# quantization end up in the heap, which it does not give back: measured, QLoRA's RSS while training then doubles.
# A fixed threshold returns them; every mode runs with it, and QLoRA once more with glibc's defaults.
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": "65536"}
RUNS = (("full", "full", FIXED_MMAP), ("lora", "lora", FIXED_MMAP), ("qlora", "qlora", FIXED_MMAP),
        ("qlora_default_allocator", "qlora", {}))


def measure(model_dir: str, data: str, steps: int, runs=RUNS) -> dict:
    out = {}
    for name, mode, allocator in runs:
        config = config_for(mode, model_dir, data, steps)
        cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "accelerate_configs/single_gpu.yaml"),
               str(ROOT / "recipes" / f"{MODES[mode]}.py"), "--config", str(config)]
        res = run(cmd, f"memory-{name}", extra_env={"INSTRUCTKIT_NUM_THREADS": "2", "OMP_NUM_THREADS": "2",
                                                    **allocator})
        (record,) = res["probe"]
        steps_rec = record["steps"]
        out[name] = {"mode": mode, "allocator": allocator or "glibc defaults", "peak_rss_mb": res["peak_rss_mb"],
                     **record["memory"], "steps": len(steps_rec), "wall_s": res["wall_s"],
                     "sec_per_step": (steps_rec[-1]["t_end"] - steps_rec[0]["t"]) / len(steps_rec),
                     "config": str(config.relative_to(ROOT)), "log": res["log"],
                     "estimate": estimate(config, mode)}
        log(f"memory {name}: peak RSS {res['peak_rss_mb']:.0f} MB, while training "
            f"{record['memory']['training_peak_rss_mb']:.0f} MB, {out[name]['sec_per_step']:.1f} s/step")
    return out


LLAMA2_7B = dict(model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                 tie_word_embeddings=False)


def paper_estimates(qwen_dir: str) -> dict:
    """`instructkit estimate` on GPUs, not measured: the 0.5B shape and Llama-2-7B's published shape (config only),
    each recipe mode, one 24 GB GPU and 8 x 80 GB; the commands are printed in the report."""
    cfg_dir = WORK / "llama2-7b-shape"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps({**LLAMA2_7B, "architectures": ["LlamaForCausalLM"]}))
    out = {}
    for label, model in (("Qwen2.5-0.5B shape", qwen_dir), ("Llama-2-7B shape", str(cfg_dir))):
        for mode in MODES:
            cfg = yaml.safe_load((ROOT / "recipes" / "configs" / f"{MODES[mode]}.yaml").read_text())
            cfg.update(model_name_or_path=model, max_length=2048, per_device_train_batch_size=4,
                       activation_checkpointing=True)
            path = WORK / "runs" / "estimate" / f"{label.split()[0]}-{mode}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(cfg))
            for gpus, mem in ((1, "24GB"), (8, "80GB")):
                out[f"{label}|{mode}|{gpus}x{mem}"] = estimate(path, mode, gpus=gpus, gpu_memory=mem)
    log("estimate: paper estimates done")
    return {"estimates": out, "settings": "batch 4 x 2048 tokens, activation checkpointing on, bf16, LoRA r 16 on "
                                          "all linear layers, QLoRA NF4 + double quantization"}
