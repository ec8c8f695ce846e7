"""`make bench`: every benchmark section, then benchmarks/RESULTS.md and its plots, from scratch.

    python benchmarks/run_all.py            # the full run (~1.5 h on 2 shared CPU cores, ~1 h of it fullsize)
    python benchmarks/run_all.py --quick    # tiny sizes, every code path, a few minutes (for development)
    python benchmarks/run_all.py --only throughput memory   # some sections; the report uses the others' last results
    python benchmarks/run_all.py --only serving             # serving under load (benchmarks/serving.py)

Sections write benchmarks/results/<section>.json; report.py turns them into RESULTS.md (+ PNGs). Scripts, not tests:
`make test` never runs them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, ROOT, WORK, env, load, log, machine, save, versions  # noqa: E402

SECTIONS = ("throughput", "memory", "estimate", "evaluation", "fullsize", "adapter_eval", "startup", "scale",
            "serving")


def asset(*args) -> dict:
    done = subprocess.run([PY, str(ROOT / "benchmarks/assets.py"), *args], env=env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks every path in a few minutes")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    a = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import os

    os.environ.update({k: v for k, v in env().items() if k.startswith(("HF_", "INSTRUCTKIT_", "TRANSFORMERS_"))})
    start = time.time()
    meta = {"quick": a.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
            "versions": versions(), "command": "make bench" + (" QUICK=1" if a.quick else ""), "sections": {}}
    log("assets: embedded data and model")
    t = time.time()
    emb = asset("embedded", *(["--quick"] if a.quick else []))
    data_rows = 300 if a.quick else 2000
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import assets

    data = assets.trl_form_data(emb["data_dir"], WORK / "data" / "throughput", data_rows)
    meta["assets"] = {"embedded": emb, "throughput_data": data, "seconds": time.time() - t}

    def section(name, fn):
        if name not in a.only:
            return
        log(f"== {name}")
        t0 = time.time()
        result = fn()
        meta["sections"][name] = time.time() - t0
        save(name, {"quick": a.quick, "seconds": time.time() - t0, **result})
        log(f"== {name} done in {time.time() - t0:.0f} s")

    import adapter_eval
    import evaluation
    import fullsize
    import memory
    import scale
    import serving
    import startup
    import throughput

    section("throughput", lambda: throughput.measure(emb["model_dir"], data, steps=6 if a.quick else 12,
                                                     rounds=3))
    qwen = None
    if {"memory", "estimate"} & set(a.only):
        t = time.time()
        qwen = emb["model_dir"] if a.quick else asset("qwen05b", emb["model_dir"])["model_dir"]
        meta["assets"]["memory_model"] = {"model_dir": qwen, "seconds": time.time() - t}
    section("memory", lambda: {"model_dir": qwen, "model": "embedded test preset" if a.quick else
                               "random Qwen2.5-0.5B shape (494 M parameters)",
                               "modes": memory.measure(qwen, data["alpaca"], steps=2)})
    section("estimate", lambda: memory.paper_estimates(qwen))
    section("evaluation", lambda: evaluation.measure(emb["model_dir"], rounds=3, limit=3 if a.quick else None))
    # full benchmark size: ~1 h on 2 shared cores (one run per arm); --quick: 5 documents per task
    section("fullsize", lambda: fullsize.measure(emb["model_dir"], limit=5 if a.quick else None))
    section("adapter_eval", lambda: adapter_eval.measure(emb["model_dir"], rounds=1 if a.quick else 2,
                                                         limit=5 if a.quick else None))
    section("startup", lambda: startup.from_throughput(load("throughput")))
    section("scale", lambda: scale.measure(emb["model_dir"], (200, 1000, 2000) if a.quick else (1000, 10000, 100000, 1000000)))
    if "serving" in a.only:  # the full embedded default as recipes use it (built once, ~3.5 min), not the cut one
        full = emb if a.quick else asset("embedded_full")
        section("serving", lambda: serving.measure(full["model_dir"], full["data_dir"], *((4, 3) if a.quick else
                                                                                         (32, 20))))
    meta["seconds"] = time.time() - start
    meta["load_avg_at_end"] = os.getloadavg()
    if set(a.only) == set(SECTIONS):
        meta["full_run"] = {"seconds": meta["seconds"], "started": meta["started"],
                            "load_avg_at_start": meta["machine"]["load_avg_at_start"]}
    previous = load("meta")
    if previous and set(a.only) != set(SECTIONS) and previous.get("quick") == a.quick:
        # a partial re-run: the report's timings cover every section, the earlier ones from the earlier run
        meta["sections"] = {**previous.get("sections", {}), **meta["sections"]}
        meta["full_run"] = previous.get("full_run")
        meta["seconds"] = sum(meta["sections"].values()) + meta["assets"]["seconds"]
        meta["reruns"] = previous.get("reruns", []) + [{"sections": a.only, "started": meta["started"]}]
        meta["started"] = previous.get("started")
    save("meta", meta)
    log(f"all sections done in {meta['seconds']:.0f} s; writing the report")
    import report

    report.write()
    log(f"wrote {report.OUT.relative_to(ROOT)} in {time.time() - start:.0f} s in all")


if __name__ == "__main__":
    main()
