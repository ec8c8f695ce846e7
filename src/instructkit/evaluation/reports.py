"""Benchmark results as saved and shown: the protocol next to lm-eval's numbers, its tables, deltas between models.

A score means little without how it was produced (shots, chat template on/off, limit, versions, which model and
adapter), and comparing two runs made differently is the classic benchmark mistake; so the protocol is recorded with
every result, together with the `lm-eval run` command that reproduces it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

from instructkit.evaluation.protocol import Protocol
from instructkit.paths import write_atomic

SAMPLES_FILE = "samples.json"  # lm-eval's per-sample scores (evaluation.intervals.sample_values)


def cli_command(names, model_args, protocol: Protocol, task_dir: Path | None, device: str,
                log_samples: bool = False) -> str:
    """The `lm-eval run` command that does the same work (for a model folder). With `log_samples` it writes the
    per-sample scores too (lm-eval then needs --output_path: add yours)."""
    args = ",".join(f"{k}={v}" for k, v in (model_args or {"pretrained": "<saved model dir>"}).items())
    vllm = protocol.backend == "vllm"
    cmd = ["lm-eval", "run", "--model", protocol.backend, "--model_args", args, *([] if vllm else ["--device", device]),
           "--batch_size", "auto" if vllm else str(protocol.batch_size), "--tasks", ",".join(names)]
    cmd += ["--include_path", str(task_dir)] if task_dir else []
    cmd += ["--num_fewshot", str(protocol.num_fewshot)] if protocol.num_fewshot is not None else []
    cmd += ["--limit", str(protocol.limit)] if protocol.limit is not None else []
    if protocol.apply_chat_template:
        cmd += ["--apply_chat_template", "--fewshot_as_multiturn", str(protocol.fewshot_as_multiturn).lower()]
    cmd += ["--log_samples"] if log_samples else []
    return shlex.join(cmd)


def results_record(res: dict, protocol: Protocol, prepared, model_args, model, out_dir: Path, device: str,
                   seconds: float, log_samples: bool = False) -> dict:
    """What benchmarks.json holds: the protocol, lm-eval's own result keys, each group's aggregation."""
    import peft
    import torch
    import transformers

    names, task_dir = prepared.names, prepared.task_dir
    model_id = (model_args or {}).get("pretrained") or getattr(model, "name_or_path", None) or "in-memory model"
    return {
        "protocol": {**asdict(protocol), "device": device, "lm_eval_tasks": names,
                     "n_shot": res.get("n-shot"), "n_samples": res.get("n-samples"),
                     "model": model_id, "adapter": (model_args or {}).get("peft")
                     or (list(getattr(model, "peft_config", {}) or []) and "in-memory PEFT adapter") or None,
                     "task_versions": res.get("versions"), "chat_template_sha": res.get("chat_template_sha"),
                     "versions": {"lm_eval": _version("lm_eval"), "transformers": transformers.__version__,
                                  "peft": peft.__version__, "torch": torch.__version__},
                     "cli": cli_command(names, model_args, protocol, task_dir, device, log_samples)},
        # lm-eval's own keys, as in its results JSON (its make_table reads them)
        **{k: res.get(k, {}) for k in ("results", "groups", "group_subtasks", "versions", "n-shot", "n-samples",
                                       "higher_is_better")},
        "aggregation": prepared.aggregation,  # group -> {metric: weight_by_size}, for the intervals
        "samples": SAMPLES_FILE if log_samples else None,
        "seconds": round(seconds, 1),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def scores(report: dict) -> dict[tuple[str, str], float]:
    """{(task, metric): value} for every task and group; stderr left out."""
    out = {}
    for task, metrics in report["results"].items():
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if filt and "stderr" not in metric and isinstance(value, (int, float)):
                out[(task, metric if filt == "none" else f"{metric} ({filt})")] = float(value)
    return out


def markdown_table(report: dict) -> str:
    """lm-eval's own results table (the one the CLI prints), preceded by the protocol line."""
    from lm_eval.utils import make_table

    p = report["protocol"]
    shots = ", ".join(f"{t} {(p['n_shot'] or {}).get(name)}" for t, name in zip(p["tasks"], p["lm_eval_tasks"]))
    head = (f"model {p['model']}" + (f", adapter {p['adapter']}" if p["adapter"] else "")
            + f"; shots: {shots}; chat template {'on' if p['apply_chat_template'] else 'off'}"
            + (f" (fewshot as multiturn {p['fewshot_as_multiturn']})" if p["apply_chat_template"] else "")
            + f"; limit {p['limit']}; data {p['data_dir'] or 'lm-eval default'}")
    tables = [make_table(report)] + ([make_table(report, "groups")] if report.get("groups") else [])
    return head + "\n\n" + "\n".join(tables)


def compare_table(reports: list[tuple[str, dict]], intervals: list[dict] | None = None) -> str:
    """One markdown table: every task/metric per model, and delta = each model - the first (the base); with
    `intervals` (per later model: `evaluation.intervals.compare`), each delta's paired 95 % interval and whether it
    excludes 0."""
    labels = [label for label, _ in reports]
    all_scores = [scores(r) for _, r in reports]
    keys = sorted(set().union(*all_scores))
    head = ["task", "metric", *labels]
    for label in labels[1:]:
        head += [f"Δ {label}"] + ([f"95 % CI {label}", "excludes 0"] if intervals else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, metric in keys:
        vals = [s.get((task, metric)) for s in all_scores]
        cells = ["" if v is None else f"{v:.4f}" for v in vals]
        for i, v in enumerate(vals[1:]):
            cells.append("" if v is None or vals[0] is None else f"{v - vals[0]:+.4f}")
            if intervals:
                cells += interval_cells(intervals[i].get(f"{task}|{metric}"))
        lines.append("| " + " | ".join([task, metric, *cells]) + " |")
    return "\n".join(lines)


def interval_cells(found: dict | None) -> list[str]:
    if not found:
        return ["", ""]
    if "note" in found:
        return [f"— ({found['note']})", ""]
    return [f"[{found['low']:+.4f}, {found['high']:+.4f}]", "**yes**" if found["excludes_zero"] else "no"]


def compare_markdown(reports: list[tuple[str, dict]], intervals: list[dict], pictures: list[str],
                     method: str) -> str:
    """compare.md: what was compared, the table with deltas and intervals, and the pictures."""
    p = reports[0][1]["protocol"]
    models = "; ".join(f"{label} = {r['protocol']['model']}"
                       + (f" + adapter {r['protocol']['adapter']}" if r["protocol"]["adapter"] else "")
                       for label, r in reports)
    how = (f"Tasks {', '.join(p['tasks'])}; {p['num_fewshot']}-shot where the task allows; chat template "
           f"{'on' if p['apply_chat_template'] else 'off'}; limit {p['limit']}; data {p['data_dir']}; "
           f"lm-eval {p['versions']['lm_eval']}, backend {p.get('backend', 'hf')}.")
    lines = ["# Benchmarks: " + " vs ".join(label for label, _ in reports), "", f"Models: {models}.", how, "",
             method, "", compare_table(reports, intervals), ""]
    lines += [f"![{Path(pic).stem}]({pic})" for pic in pictures]
    return "\n".join(lines) + "\n"


def save_results(report: dict, out_dir: Path, samples: dict | None = None) -> None:
    """benchmarks.json, benchmarks.md and (given) the per-sample scores, samples.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "benchmarks.json", json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(out_dir / "benchmarks.md", markdown_table(report) + "\n")
    if samples is not None:
        write_atomic(out_dir / SAMPLES_FILE, json.dumps(samples) + "\n")


def load_samples(out_dir: Path) -> dict | None:
    path = Path(out_dir) / SAMPLES_FILE
    return json.loads(path.read_text()) if path.is_file() else None
