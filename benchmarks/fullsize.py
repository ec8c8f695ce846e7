"""Evaluation at full benchmark size: the in-training hook and `instructkit eval` against `lm-eval run`, on the same
model and the same task YAMLs, over an MMLU-sized and a TruthfulQA-sized data set of the project's own
(benchmarks/fullsize_data.py: 57 subjects, 14,042 test questions 5-shot; 817 questions, mc1 + mc2). Every score and
stderr must be equal; the wall-time ratios are the result.

    python benchmarks/fullsize.py [--arms hook instructkit_eval cli] [--limit N] [--model DIR]

Each arm is one process, run one after the other (each takes minutes at full size: run them in separate commands
with --arms to keep each under a time budget); results merge into benchmarks/results/fullsize.json, which
`make bench` (run_all.py, section fullsize) writes whole and report.py turns into the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, PY, ROOT, WORK, load, log, run, save  # noqa: E402

ARMS = ("hook", "instructkit_eval", "cli")
DATA = WORK / "fullsize"


def data() -> dict:
    """The full-size data (written once; rewritten if its generator changed the counts)."""
    import fullsize_data

    stats = DATA / "stats.json"
    if not stats.is_file():
        DATA.mkdir(parents=True, exist_ok=True)
        stats.write_text(json.dumps(fullsize_data.write(DATA)))
    return json.loads(stats.read_text())


def numbers(results: dict) -> dict:
    """{task|metric: value} for scores and stderrs of an lm-eval results dict (`results` key)."""
    return {f"{t}|{k}": v for t, m in results.items() for k, v in m.items()
            if "," in k and isinstance(v, (int, float)) and not isinstance(v, bool)}


def hook(model_dir: str, out: Path, limit) -> dict:
    res = run([PY, str(ROOT / "benchmarks/eval_hook.py"), model_dir, str(out), "--data_dir", str(DATA), "--calls",
               "2"] + (["--limit", str(limit)] if limit else []), "fullsize-hook", timeout=7200)
    found = json.loads(next(line for _, line in reversed(res["lines"]) if line.startswith("{")))
    calls = found["calls"]
    return {"cold_s": calls[0]["seconds"], "warm_s": calls[1]["seconds"], "process_s": res["wall_s"],
            "numbers": [c["numbers"] for c in calls], "cli": found["cli"], "log": res["log"]}


def instructkit_eval(model_dir: str, out: Path, limit) -> dict:
    cmd = [PY, "-m", "instructkit.commands.main", "eval", "--models", model_dir, "--data_dir", str(DATA),
           "--output_dir", str(out)] + (["--limit", str(limit)] if limit else [])
    res = run(cmd, "fullsize-instructkit-eval", timeout=7200)
    report = json.loads(next(out.glob("0-*/benchmarks.json")).read_text())
    return {"wall_s": res["wall_s"], "numbers": numbers(report["results"]), "cmd": shlex.join(cmd[2:]),
            "log": res["log"]}


def cli(cli_command: str, out: Path) -> dict:
    cmd = shlex.split(cli_command)
    cmd = [str(BIN / "lm-eval"), *cmd[1:], "--output_path", str(out)]
    res = run(cmd, "fullsize-cli", timeout=7200)
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    return {"wall_s": res["wall_s"], "numbers": numbers(results["results"]), "cmd": " ".join(["lm-eval", *cmd[1:]]),
            "log": res["log"]}


def summarize(found: dict) -> dict:
    """Ratios and equality over the arms measured so far."""
    out = dict(found)
    h, e, c = found.get("hook"), found.get("instructkit_eval"), found.get("cli")
    if h and c:
        out["ratio_cli_over_hook_cold"] = c["wall_s"] / h["cold_s"]
        out["ratio_cli_over_hook_warm"] = c["wall_s"] / h["warm_s"]
    if e and c:
        out["ratio_cli_over_instructkit_eval"] = c["wall_s"] / e["wall_s"]
    sets = ([*h["numbers"]] if h else []) + ([e["numbers"]] if e else []) + ([c["numbers"]] if c else [])
    out["equal_numbers"] = len(sets) > 1 and all(same(s, sets[0]) for s in sets)
    out["numbers_compared"] = len(sets[0]) if sets else 0
    out["nan_numbers"] = sorted(k for k, v in sets[0].items() if v != v) if sets else []
    return out


def same(a: dict, b: dict) -> bool:
    """Equal numbers, NaN equal to NaN (lm-eval's mc2 is NaN when an answer's likelihood underflows: in every arm)."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def measure(model_dir: str, arms=ARMS, limit=None) -> dict:
    stats = data()
    previous = load("fullsize") or {}
    found = {k: previous[k] for k in ARMS if k in previous and previous.get("limit") == limit
             and previous.get("model_dir") == model_dir}
    base = WORK / "runs" / "fullsize"
    for arm in arms:
        t = time.time()
        if arm == "hook":
            found["hook"] = hook(model_dir, base / "hook", limit)
        elif arm == "instructkit_eval":
            found["instructkit_eval"] = instructkit_eval(model_dir, base / "instructkit_eval", limit)
        elif arm == "cli":
            if "hook" not in found:
                raise SystemExit("the cli arm runs the command the hook recorded: run --arms hook first")
            found["cli"] = cli(found["hook"]["cli"], base / "cli")
        found[arm]["measured"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        log(f"fullsize {arm}: {time.time() - t:.0f} s")
    return {"model_dir": model_dir, "limit": limit, "data": stats, **summarize(found),
            "nan_samples": nan_samples(base / "hook" / "call-0" / "samples.json")}


def nan_samples(path: Path) -> dict:
    """{task|metric: [NaN documents, documents]} where lm-eval's per-document score is NaN (the hook's first call)."""
    if not path.is_file():
        return {}
    found = json.loads(path.read_text())
    return {f"{t}|{m}": [sum(v != v for v in r["value"]), len(r["value"])] for t, ms in found.items()
            for m, r in ms.items() if isinstance(r, dict) and any(v != v for v in r.get("value", []))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="*", choices=ARMS, default=list(ARMS),
                   help="none: summarize the arms measured before again")
    p.add_argument("--limit", type=int, default=None, help="documents per task (a quick check, not the result)")
    p.add_argument("--model", default=None, help="default: the benchmarks' embedded model (assets.py embedded)")
    a = p.parse_args()
    import os

    from common import env

    os.environ.update({k: v for k, v in env().items() if k.startswith(("HF_", "INSTRUCTKIT_", "TRANSFORMERS_"))})
    sys.path.insert(0, str(ROOT / "src"))
    import assets

    model = a.model or assets.embedded(quick=False)["model_dir"]
    t = time.time()
    result = measure(model, a.arms, a.limit)
    seconds = time.time() - t if a.arms else (load("fullsize") or {}).get("seconds")
    save("fullsize", {"quick": False, "seconds": seconds, **result})
    log(f"saved benchmarks/results/fullsize.json ({', '.join(a.arms)})")


if __name__ == "__main__":
    main()
