"""What every benchmark section shares: the environment, running one measured subprocess, machine facts, medians.

Each configuration runs in its own subprocess so that peaks never mix: its peak RSS comes from `os.wait4` (the
largest resident set in its process tree: `accelerate launch` waits for the training process it starts), and the
probe in benchmarks/probe/ records the training steps of whatever Trainer runs inside.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
WORK = ROOT / ".cache" / "bench"            # models, data, run outputs (git-ignored)
RESULTS = BENCH / "results"                 # raw JSON per section (committed with RESULTS.md)
PY = sys.executable
BIN = Path(sys.executable).parent
THREADS = 1  # every arm gets the same single intra-op thread: 2 shared cores make 2-thread timings swing 10x


def env(**extra) -> dict:
    """Offline, one thread per process, the probe on the path, caches inside .cache/bench."""
    e = dict(os.environ)
    e.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             OMP_NUM_THREADS=str(THREADS), INSTRUCTKIT_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS),
             INSTRUCTKIT_CACHE=str(WORK / "instructkit"), HF_DATASETS_CACHE=str(WORK / "hf_datasets"),
             HF_HOME=str(WORK / "hf_home"), PYTHONPATH=f"{BENCH / 'probe'}{os.pathsep}{ROOT / 'src'}",
             ACCELERATE_DISABLE_RICH="1")
    e.pop("INSTRUCTKIT_EMBEDDED", None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run(cmd: list[str], name: str, timeout: float = 1800, extra_env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Run `cmd` with the probe on; returns wall time, exit code, peak RSS of the process tree, the probe records
    (one per training process) and the output lines with the time each arrived (for start-up phases)."""
    probe = WORK / "probe" / f"{name}-{time.time_ns()}"
    shutil.rmtree(probe, ignore_errors=True)
    probe.mkdir(parents=True)
    log_path = WORK / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(IK_BENCH_PROBE=probe, **(extra_env or {})), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    lines: list[tuple[float, str]] = []

    def reader():
        with open(log_path, "w") as log:
            for line in proc.stdout:
                lines.append((time.time() - t0, line.rstrip("\n")))
                log.write(line)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    thread.join(10)
    wall = time.time() - t0
    records = [json.loads(p.read_text()) for p in sorted(probe.glob("*.json"))]
    for r in records:  # times relative to the launch
        r["first_step_s"] = r["steps"][0]["t"] - t0
    out = {"name": name, "cmd": cmd, "rc": proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
           "probe": records, "lines": lines, "log": str(log_path.relative_to(ROOT))}
    if proc.returncode != 0:
        tail = "\n".join(l for _, l in lines[-25:])
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return out


def step_rates(record: dict, skip: int = 2) -> dict:
    """Per-run rates from the probe's steps, ignoring the first `skip` (warm-up). Step i lasts from its start to the
    start of step i+1 (forward, backward, optimizer, data loading: all a user waits for). Per wall-clock second, and
    per CPU second of the training process: with one intra-op thread the latter is what a dedicated core would give,
    and it does not move when other jobs on the shared machine come and go."""
    steps = record["steps"]
    window = steps[skip:]
    if len(window) < 2:
        raise RuntimeError("too few steps to time")
    timed = window[:-1]
    seconds = window[-1]["t"] - window[0]["t"]
    useful = sum(s["useful"] for s in timed)
    cpu = window[-1]["cpu"] - window[0]["cpu"] if "cpu" in window[0] else float("nan")
    return {"steps": len(steps), "timed_steps": len(timed), "seconds": seconds, "cpu_seconds": cpu,
            "useful_tok_cpu_s": useful / cpu, "cpu_share": cpu / seconds,
            "sec_per_step": statistics.median(b["t"] - a["t"] for a, b in zip(window, window[1:])),
            "useful_tok_s": useful / seconds, "trained_tok_s": sum(s["trained"] or 0 for s in timed) / seconds,
            "slot_tok_s": sum(s["slots"] for s in timed) / seconds,
            "useful_fraction": sum(s["useful"] for s in steps) / sum(s["slots"] for s in steps),
            "tokens_per_step": statistics.mean(s["useful"] for s in steps),
            "torch_threads": record.get("torch_threads")}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "deepspeed", "datasets",
                "lm_eval", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
    mem = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "recipes", "benchmarks/*.py"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    commit = commit.strip() + (" + uncommitted changes" if dirty else "")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**20, 1),
            "avx512": "avx512f" in flags, "amx": "amx_tile" in flags, "load_avg_at_start": os.getloadavg(),
            "os": platform.platform(), "git_commit": commit.strip(), "threads_per_run": THREADS}


def save(section: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{section}.json"
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def load(section: str) -> dict | None:
    path = RESULTS / f"{section}.json"
    return json.loads(path.read_text()) if path.exists() else None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)
