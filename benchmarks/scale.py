"""Scale: data preparation time and memory at 1k, 10k, 100k, 1M rows (the embedded world's generator, alpaca
rows), each size in its own process; at the largest size up to 100k, TRL's tokenization in one process against the
default `dataset_num_proc` (the usable cores), cold, then warm (the next run, the datasets cache reused)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, ROOT, WORK, log, run  # noqa: E402


def write_rows(n: int) -> Path:
    from instructkit.embedded import world as W

    path = WORK / "data" / "scale" / f"rows_{n}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = W.instruction_rows(W.World(0), n, 0, "train")
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prep(model_dir: str, n: int, name: str, *args: str, cold: bool = True) -> dict:
    cache = WORK / "hf_datasets_scale"  # cold: the datasets cache would skip TRL's tokenization
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    res = run([PY, str(ROOT / "benchmarks/scale_prep.py"), model_dir, str(write_rows(n)), *args], name,
              extra_env={"HF_DATASETS_CACHE": str(cache)})
    rec = json.loads(next(l for _, l in reversed(res["lines"]) if l.startswith("{")))
    log(f"{name}: load {rec['load_s']:.1f} s, tokenize {rec['tokenize_s']:.1f} s in {rec['dataset_num_proc']} "
        f"process(es), peak {res['peak_rss_mb']:.0f} MB")
    return {**rec, "process_peak_mb": res["peak_rss_mb"], "wall_s": res["wall_s"],
            "file_mb": (WORK / "data" / "scale" / f"rows_{n}.jsonl").stat().st_size / 2**20}


def measure(model_dir: str, sizes=(1000, 10000, 100000, 1000000)) -> dict:
    """Every size cold, then at the largest up to 100k the default again on its cache (warm) and one process
    (cold)."""
    n = max(s for s in sizes if s <= 100000)
    found = {s: prep(model_dir, s, f"scale-{s}") for s in sorted(sizes, key=lambda s: s == n)}  # n last: warm next
    found = {s: found[s] for s in sizes}
    return {"sizes": found, "tokenization": {
        "rows": n, "default": found[n], "default_warm": prep(model_dir, n, f"scale-{n}-warm", cold=False),
        "one_process": prep(model_dir, n, f"scale-{n}-procs1", "--dataset_num_proc", "1")}}
