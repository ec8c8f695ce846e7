"""Evaluating a LoRA adapter against its base model: `instructkit eval` on each (a new process per run, one thread),
on the TruthfulQA-sized set of benchmarks/fullsize_data.py (817 questions, mc1 + mc2), interleaved rounds; and where
the adapter's extra time goes: one forward of the base, the adapter as lm-eval's `peft=` loads it, and the adapter
merged into the base.

    python benchmarks/adapter_eval.py [--rounds 2] [--limit N]

The adapter has the shipped sft_lora.yaml's shape (r 16, alpha 32, every linear layer) with random non-zero weights:
the cost does not depend on the values. A QLoRA adapter is the same file (its base is evaluated in full precision).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, WORK, env, log, median, run, save  # noqa: E402
import fullsize  # noqa: E402

TASKS = ["truthfulqa_mc1", "truthfulqa_mc2"]


def make_adapter(model_dir: str) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = WORK / "adapters" / "lora-r16"
    if not (out / "adapter_model.safetensors").is_file():
        base = AutoModelForCausalLM.from_pretrained(model_dir)
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(out)
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def forward_seconds(model_dir: str, adapter: Path, reps: int = 10) -> dict:
    """One batch (8 x 256 tokens) through the base, the unmerged adapter (PeftModel) and the merged one."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    batch = torch.randint(0, 500, (8, 256))

    def timed(model) -> float:
        with torch.no_grad():
            model(batch)
            t = time.perf_counter()
            for _ in range(reps):
                model(batch)
        return (time.perf_counter() - t) / reps

    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = {"base_s": timed(base)}
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter).eval()
    out["adapter_s"] = timed(peft)
    out["merged_s"] = timed(peft.merge_and_unload().eval())
    return out


def evaluate(model_dir: str, adapter: Path | None, out: Path, data_dir: Path, limit) -> dict:
    models = [str(adapter)] if adapter else [model_dir]
    cmd = [PY, "-m", "instructkit.commands.main", "eval", "--models", *models, "--tasks", *TASKS, "--data_dir",
           str(data_dir), "--output_dir", str(out)] + (["--limit", str(limit)] if limit else [])
    res = run(cmd, f"adapter-eval-{out.name}", timeout=7200)
    report = json.loads(next(out.glob("0-*/benchmarks.json")).read_text())
    return {"wall_s": res["wall_s"], "eval_s": report["seconds"], "scores": fullsize.numbers(report["results"])}


def measure(model_dir: str, rounds: int = 2, limit=None) -> dict:
    fullsize.data()
    adapter = make_adapter(model_dir)
    runs = {"base": [], "adapter": []}
    for r in range(rounds):  # interleaved: base, adapter, base, adapter
        for arm in ("base", "adapter"):
            out = WORK / "runs" / "adapter_eval" / f"{arm}-{r}"
            runs[arm].append(evaluate(model_dir, adapter if arm == "adapter" else None, out, fullsize.DATA, limit))
            log(f"adapter eval round {r} {arm}: {runs[arm][-1]['wall_s']:.1f} s")
    base_s, adapter_s = median([x["wall_s"] for x in runs["base"]]), median([x["wall_s"] for x in runs["adapter"]])
    return {"model_dir": model_dir, "tasks": TASKS, "limit": limit, "rounds": rounds, "runs": runs,
            "median_base_s": base_s, "median_adapter_s": adapter_s, "ratio_adapter_over_base": adapter_s / base_s,
            "forward": forward_seconds(model_dir, adapter), "adapter": {"r": 16, "lora_alpha": 32,
                                                                       "target_modules": "all-linear"}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args()
    import os

    os.environ.update({k: v for k, v in env().items() if k.startswith(("HF_", "INSTRUCTKIT_", "TRANSFORMERS_"))})
    import assets

    model = assets.embedded(quick=False)["model_dir"]
    t = time.time()
    result = measure(model, a.rounds, a.limit)
    save("adapter_eval", {"quick": False, "seconds": time.time() - t, **result})
    log("saved benchmarks/results/adapter_eval.json")


if __name__ == "__main__":
    main()
