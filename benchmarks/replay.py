"""General-text replay on the embedded default: full SFT with 0 %, 10 % or 20 % of its training rows replayed from the
base's own pretraining prose (`path: embedded_prose` in a dataset_mixture), measured on held-out exact match and on
the base's prose completion of the held-out dictionary words ("zeka means" -> " gravel."), which full SFT suppresses.
Not part of `make bench`: each arm is one full default run (~4-5 min on 2 cores).

    python benchmarks/replay.py --base           # the base model's prose completion
    python benchmarks/replay.py --share 0.1      # one arm: trains, measures, adds it to benchmarks/results/replay.json
    python benchmarks/replay.py --report         # the table (docs/embedded.md)

Uses the embedded default itself (the default cache, INSTRUCTKIT_EMBEDDED unset), like the README's measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "replay.json"
OUT = ROOT / "outputs" / "replay"
SFT_ROWS, PROSE_ROWS = 14400, 48000  # the default's training rows and pretraining statements


def replay_weight(share: float) -> float:
    """The mixture weight of the prose corpus that makes it `share` of the training rows."""
    return round(share / (1 - share) * SFT_ROWS / PROSE_ROWS, 6)


def arm_config(share: float) -> Path:
    """recipes/configs/sft_full.yaml, with the prose replayed at `share` (0: the default unchanged)."""
    config = yaml.safe_load((ROOT / "recipes" / "configs" / "sft_full.yaml").read_text())
    if share > 0:
        del config["dataset_name"]
        config["dataset_mixture"] = [{"path": "embedded"}, {"path": "embedded_prose", "weight": replay_weight(share)}]
        config["test_split_size"] = 0  # held out: the default's own test and test_phrasings splits
    path = OUT / f"config-{share}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prose_recall(model_dir: Path) -> dict:
    """Greedy raw-text completion (no chat template) of every prose form of every dictionary entry: held-out words
    (never asked in SFT) and asked ones, as the share whose continuation is the entry's meaning."""
    from instructkit.embedded import world as W
    from instructkit.evaluation.generation import generate
    from instructkit.modeling.loading import load_for_inference

    model, tok = load_for_inference(str(model_dir))
    world = W.World(0)
    forms = next(t for t in W.TASKS if t.name == "translate").prose
    out = {}
    for name, words in (("held_out", world.heldout_zorbish), ("asked", world.train_zorbish)):
        prompts = [(form.split("{ans}")[0].rstrip().format(z=z), world.dictionary[z]) for z in words for form in forms]
        answers = generate(model, tok, [p for p, _ in prompts], max_new_tokens=6)
        hits = [a["text"].strip().split(".")[0].strip() == meaning for a, (_, meaning) in zip(answers, prompts)]
        out[name] = {"correct": sum(hits), "n": len(hits), "share": round(sum(hits) / len(hits), 4)}
    return out


def save(key: str, value: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = value
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def run_arm(share: float) -> dict:
    out = OUT / f"share-{share}"
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
           str(ROOT / "accelerate_configs" / "single_gpu.yaml"), str(ROOT / "recipes" / "sft_full.py"),
           "--config", str(arm_config(share)), "--output_dir", str(out), "--overwrite_output_dir", "true"]
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    after = metrics["exact_match"]["after"]
    result = {"share": share, "weight": replay_weight(share) if share else 0, "wall_s": round(time.time() - t0, 1),
              "train_s": round(metrics["train"]["train_runtime"], 1), "steps": metrics["log_history"][-1].get("step"),
              "rows": metrics["data"]["rows"], "tokens": metrics["data"].get("tokens"),
              "test": after["test"]["exact_match"], "test_phrasings": after["test_phrasings"]["exact_match"],
              "dictionary": after["test"]["per_task"]["translate"], "prose": prose_recall(out)}
    save(f"share-{share}", result)
    return result


def report() -> str:
    results = json.loads(RESULTS.read_text())
    base = results["base"]["prose"]
    lines = ["| replayed prose | rows (SFT + prose) | training time | `test` | dictionary (`test`) | `test_phrasings` "
             "| prose completion, held-out words | prose completion, asked words |", "|---|---|---|---|---|---|---|---|",
             f"| (the base, before SFT) | | | 0 % | 0 % | 0 % | {base['held_out']['correct']}/{base['held_out']['n']} "
             f"| {base['asked']['correct']}/{base['asked']['n']} |"]
    for key in sorted(k for k in results if k.startswith("share-")):
        r = results[key]
        prose_rows = r["rows"]["train"] - SFT_ROWS
        lines.append(f"| {r['share']:.0%} (weight {r['weight']}) | {SFT_ROWS:,} + {prose_rows:,} | {r['train_s']:.0f} s "
                     f"| {r['test']:.1%} | {r['dictionary']:.0%} | {r['test_phrasings']:.1%} "
                     f"| {r['prose']['held_out']['correct']}/{r['prose']['held_out']['n']} "
                     f"| {r['prose']['asked']['correct']}/{r['prose']['asked']['n']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, help="replayed share of the training rows (0, 0.1, 0.2, ...)")
    parser.add_argument("--base", action="store_true", help="measure the base model's prose completion")
    parser.add_argument("--report", action="store_true", help="print the table")
    args = parser.parse_args()
    os.environ.pop("INSTRUCTKIT_EMBEDDED", None)
    if args.base:
        from instructkit.embedded import ensure_embedded

        save("base", {"prose": prose_recall(ensure_embedded().model_dir)})
    if args.share is not None:
        print(json.dumps(run_arm(args.share), indent=2))
    if args.report:
        print(report())


if __name__ == "__main__":
    main()
