"""SFT throughput at identical model / rows / batch / max_length: instructkit's default recipe vs `trl sft` with its
defaults vs a padded-to-max_length Trainer loop (+ instructkit with padding, the previous default), interleaved.

Each arm is a subprocess, run in rounds (A B C D, A B C D, ...); the probe times the steps after two warm-up steps.
Reported per arm: useful-token fraction (non-pad / computed tokens) and useful (non-pad) tokens per second; ratios
are taken within a round (same machine load) and their median is reported.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, PY, ROOT, WORK, log, median, run, step_rates  # noqa: E402
from startup import phases  # noqa: E402

BATCH, MAX_LENGTH = 16, 128


def arms(model_dir: str, data: dict, steps: int) -> dict[str, list[str]]:
    out = WORK / "runs" / "throughput"
    recipe = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "accelerate_configs/single_gpu.yaml"),
              str(ROOT / "recipes/sft_full.py"), "--model_name_or_path", model_dir, "--dataset_name", data["alpaca"],
              "--max_steps", str(steps), "--eval_exact_match", "false", "--test_split_size", "0",
              "--per_device_train_batch_size", str(BATCH), "--max_length", str(MAX_LENGTH),
              "--logging_steps", "1000", "--overwrite_output_dir", "true"]  # every round re-runs into the same folder
    return {
        "instructkit": recipe + ["--output_dir", str(out / "ik")],
        "instructkit_padded": recipe + ["--output_dir", str(out / "ik_padded"), "--padding_free", "false"],
        # trl's defaults, plus what this CPU needs (bf16 autocast is ~8x slower here, and TRL's default bf16=True
        # refuses to start without a bf16-capable device): fp32 like every other arm
        "trl_sft": [str(BIN / "trl"), "sft", "--model_name_or_path", model_dir, "--dataset_name", data["trl"],
                    "--per_device_train_batch_size", str(BATCH), "--max_length", str(MAX_LENGTH),
                    "--max_steps", str(steps), "--output_dir", str(out / "trl"), "--bf16", "false",
                    "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1000"],
        "padded_loop": [PY, str(ROOT / "benchmarks/padded_loop.py"), model_dir, data["alpaca"], str(out / "loop"),
                        "--max_steps", str(steps), "--batch_size", str(BATCH), "--max_length", str(MAX_LENGTH)],
    }


def measure(model_dir: str, data: dict, steps: int, rounds: int) -> dict:
    commands = arms(model_dir, data, steps)
    shutil.rmtree(WORK / "hf_datasets", ignore_errors=True)  # round 0 starts cold (section 5 reads its start-up)
    shutil.rmtree(WORK / "runs" / "throughput", ignore_errors=True)
    runs: dict[str, list[dict]] = {a: [] for a in commands}
    for r in range(rounds):
        for arm, cmd in commands.items():
            res = run(cmd, f"throughput-{arm}-{r}")
            (record,) = res["probe"]
            runs[arm].append({"round": r, **step_rates(record), "wall_s": res["wall_s"],
                              "first_step_s": record["first_step_s"], "phases": phases(res), "log": res["log"]})
            log(f"throughput {arm} round {r}: {runs[arm][-1]['useful_tok_s']:.0f} useful tok/s "
                f"({runs[arm][-1]['useful_tok_cpu_s']:.0f} per CPU s), "
                f"fraction {runs[arm][-1]['useful_fraction']:.3f}")
    ratios = {}
    for other in ("trl_sft", "padded_loop", "instructkit_padded"):
        per_round = [a["useful_tok_s"] / b["useful_tok_s"] for a, b in zip(runs["instructkit"], runs[other])]
        per_round_cpu = [a["useful_tok_cpu_s"] / b["useful_tok_cpu_s"] for a, b in zip(runs["instructkit"], runs[other])]
        ratios[f"instructkit_vs_{other}"] = {"per_round": per_round, "median": median(per_round),
                                             "per_round_cpu": per_round_cpu, "median_cpu": median(per_round_cpu)}
    summary = {arm: {k: median([x[k] for x in rs]) for k in ("useful_tok_s", "useful_tok_cpu_s", "cpu_share",
                                                              "trained_tok_s", "useful_fraction", "sec_per_step",
                                                              "tokens_per_step")}
               for arm, rs in runs.items()}
    return {"batch": BATCH, "max_length": MAX_LENGTH, "steps": steps, "rounds": rounds, "rows": data["rows"],
            "commands": {a: " ".join(c) for a, c in commands.items()}, "runs": runs, "summary": summary,
            "ratios": ratios}
