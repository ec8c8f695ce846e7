"""Evaluation cost: the end-of-training hook (in-process, in-memory model) vs the `lm-eval run` command instructkit
records for the same work (a new process on the saved model), same model and local data (the bundled fixture:
MMLU 5-shot + TruthfulQA mc1/mc2), interleaved rounds; numbers must be equal."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, PY, ROOT, WORK, log, median, run  # noqa: E402


def cli_scores(out: Path) -> dict:
    res = json.loads(next(out.rglob("results_*.json")).read_text())
    return {f"{t}|{k.split(',')[0]}": v for t, m in res["results"].items() for k, v in m.items()
            if "," in k and "stderr" not in k and isinstance(v, (int, float))}


def measure(model_dir: str, rounds: int, limit: int | None = None) -> dict:
    hooks, clis, same = [], [], []
    for r in range(rounds):
        out = WORK / "runs" / "eval" / f"r{r}"
        res = run([PY, str(ROOT / "benchmarks/eval_hook.py"), model_dir, str(out / "hook")]
                  + (["--limit", str(limit)] if limit else []), f"eval-hook-{r}")
        hook = json.loads(next(l for _, l in reversed(res["lines"]) if l.startswith("{")))
        hooks.append({"hook_s": hook["seconds"], "process_s": res["wall_s"]})
        cmd = shlex.split(hook["cli"])
        cmd = [str(BIN / "lm-eval"), *cmd[1:], "--output_path", str(out / "cli")]
        cli = run(cmd, f"eval-cli-{r}")
        clis.append(cli["wall_s"])
        theirs = cli_scores(out / "cli")
        ours = {k: v for k, v in hook["scores"].items()}
        same.append(all(theirs.get(k) == v for k, v in ours.items()) and bool(ours))
        log(f"eval round {r}: hook {hook['seconds']:.1f} s (process {res['wall_s']:.1f} s), CLI {cli['wall_s']:.1f} s, "
            f"equal numbers: {same[-1]}")
    ratios = [c / h["hook_s"] for c, h in zip(clis, hooks)]
    return {"rounds": rounds, "limit": limit, "hook": hooks, "cli_s": clis, "ratio_cli_over_hook": ratios,
            "median_ratio": median(ratios), "median_hook_s": median([h["hook_s"] for h in hooks]),
            "median_hook_process_s": median([h["process_s"] for h in hooks]), "median_cli_s": median(clis),
            "equal_numbers": all(same), "scores": ours, "cli": " ".join(cmd[:1] + ["run"] + cmd[2:])}
