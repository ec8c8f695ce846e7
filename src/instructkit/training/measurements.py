"""What a run measures on its held-out data: exact match before and after training, and, as configured, generation
metrics after training and lm-eval benchmarks on the in-memory model before and after training (tuned - base deltas
with paired 95 % intervals, compare.md and compare.png) and during it (`benchmark_steps`: `BenchmarksDuringTraining`).
The training rows are screened for overlap with the benchmark questions while the data loads
(`decontamination_screen`: a report, or with `decontaminate: drop` the overlapping rows removed).
"""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.data.splits import exact_match_rows
from instructkit.distributed import weights_for_generation, weights_sharded
from instructkit.errors import InstructkitError
from instructkit.evaluation import decontamination as dc
from instructkit.evaluation.comparison import COMPARE_FILE, write_comparison
from instructkit.evaluation.exact_match import exact_match
from instructkit.evaluation.harness import PreparedTasks, evaluate, prepare_tasks
from instructkit.evaluation.intervals import method_note
from instructkit.evaluation.protocol import Protocol
from instructkit.evaluation.reports import compare_table, markdown_table, scores
from instructkit.evaluation.text_metrics import format_generation_metrics, heldout_generation_metrics
from instructkit.log import log


def format_exact_match(label: str, results: dict) -> str:
    if not results:
        return f"{label}: exact match not measured"
    return f"{label}: " + ", ".join(f"{split} exact match {r['exact_match']:.1%} (n={r['n']}, stopped {r['stopped']:.0%})"
                                    for split, r in results.items())


def held_out_exact_match(trainer, tokenizer, held_out: dict, args) -> dict:
    """{split: result} on every held-out split ({} when disabled or, said in the log, when there are no weights to
    generate from). Every process answers its share of the rows, with the full weights (gathered under sharding)."""
    if not args.eval_exact_match:
        return {}
    results = {}
    with weights_for_generation(trainer) as model:
        if model is None:
            log("held-out exact match skipped: no weights to generate from on every process yet (after training "
                "the trainer's sharded weights are gathered and it runs; the starting model's score: run the recipe "
                "under accelerate_configs/ddp.yaml)")
            return {}
        for split, dataset in held_out.items():
            rows = exact_match_rows(dataset, args.eval_max_samples)
            if rows:
                results[split] = exact_match(model, tokenizer, rows, args.eval_max_new_tokens, args.eval_batch_size)
    return results


def benchmark_protocol(args) -> Protocol:
    return Protocol(tasks=list(args.eval_benchmarks), data_dir=args.benchmark_data_dir,
                    num_fewshot=args.benchmark_num_fewshot, limit=args.benchmark_limit,
                    batch_size=args.benchmark_batch_size, apply_chat_template=args.benchmark_chat_template,
                    fewshot_as_multiturn=args.benchmark_fewshot_as_multiturn)


def benchmark_dir(config) -> Path:
    return Path(config.training.output_dir) / "benchmarks"


def check_benchmark_settings(args) -> None:
    """Benchmark keys that need `eval_benchmarks`, refused before anything loads (they would silently do nothing)."""
    if args.benchmark_steps < 0:
        raise InstructkitError(f"benchmark_steps: {args.benchmark_steps} is negative.",
                               fix="set it to a number of optimizer steps, or 0 for before and after training only.")
    needs = [f"benchmark_steps: {args.benchmark_steps}"] * (args.benchmark_steps > 0) \
        + [f"decontaminate: {args.decontaminate}"] * (args.decontaminate == "drop")
    if needs and not args.eval_benchmarks:
        raise InstructkitError(f"{' and '.join(needs)} need{'s' if len(needs) == 1 else ''} the benchmarks of "
                               "eval_benchmarks, which is not set.",
                               fix="set eval_benchmarks (e.g. [mmlu, truthfulqa_mc1, truthfulqa_mc2]) and "
                                   "benchmark_data_dir, or remove " + " and ".join(k.split(":")[0] for k in needs) + ".")


_PREPARED: dict[tuple, PreparedTasks] = {}


def prepared_benchmarks(config) -> PreparedTasks:
    """The run's benchmark tasks, built once per process (the decontamination screen, before, during, after)."""
    protocol = benchmark_protocol(config.script)
    key = (str(benchmark_dir(config)), repr(protocol))
    if key not in _PREPARED:
        _PREPARED[key] = prepare_tasks(protocol, benchmark_dir(config) / "lm_eval_tasks")
    return _PREPARED[key]


def decontamination_screen(config):
    """With benchmarks configured: the screen `data.loading` runs on every valid training row (every process, so all
    drop the same rows), flagging overlaps with the benchmark questions; `decontaminate: drop` also removes them."""
    args = config.script
    if not args.eval_benchmarks:
        return None
    questions = dc.benchmark_questions(prepared_benchmarks(config).loaded["tasks"])
    return dc.RowScreen(dc.BenchmarkIndex(questions, args.decontamination_ngram), drop=args.decontaminate == "drop")


def log_decontamination(data, screen) -> None:
    """The screen's report into the data report (metrics.json) and the log, before training."""
    if screen is None:
        return
    data.report.decontamination = screen.result()
    for line in dc.summary_lines(data.report.decontamination):
        log(line)


def generation_metrics(trainer, tokenizer, held_out: dict, args) -> dict | None:
    """Held-out response perplexity and exact match / ROUGE-L / BLEU of greedy answers (None, said in the log, when
    there are no weights to generate from). Every process calls it and computes the same (under ZeRO-3 / FSDP with
    the weights gathered: processes that ran different forwards would fall out of step in later collectives)."""
    results = {}
    with weights_for_generation(trainer) as model:
        if model is None:
            return None
        for split, dataset in held_out.items():
            rows = exact_match_rows(dataset, args.eval_max_samples)
            if rows:
                results[split] = heldout_generation_metrics(model, tokenizer, rows, args.eval_max_new_tokens,
                                                            args.eval_batch_size)
    log(format_generation_metrics("after training", results))
    return results


def benchmark_summary(report: dict) -> dict:
    """Scores as `task/metric`; `headline`: those of groups and of tasks outside an aggregated group (what the
    curves show: MMLU's group, not its 57 subjects)."""
    aggregated = {t for g in report.get("aggregation") or {} for t in report.get("group_subtasks", {}).get(g, [])}
    found = {f"{t}/{m}": v for (t, m), v in scores(report).items()}
    return {"scores": found, "headline": [k for k in found if k.split("/")[0] not in aggregated],
            "protocol": report["protocol"], "seconds": report["seconds"]}


def run_benchmarks(trainer, tokenizer, config, where: Path, log_samples: bool = True) -> dict | None:
    """lm-eval on the in-memory model (main process: the caller's), or None with one line saying why not."""
    if weights_sharded(trainer):
        log("benchmarks skipped: the weights are sharded (FSDP / ZeRO-3), so one process cannot run the model; "
            f"evaluate the saved output: instructkit eval --models {config.training.output_dir}")
        return None
    return evaluate(benchmark_protocol(config.script), where, model=trainer.model, tokenizer=tokenizer,
                    prepared=prepared_benchmarks(config), log_samples=log_samples)


def benchmarks_at_step(trainer, tokenizer, config, step: int) -> dict | None:
    """The benchmarks during training (`benchmarks/steps/step-<N>/`; no per-sample file: nothing compares them)."""
    report = run_benchmarks(trainer, tokenizer, config, benchmark_dir(config) / "steps" / f"step-{step}",
                            log_samples=False)
    return benchmark_summary(report) if report is not None else None


def benchmarks_before_training(trainer, tokenizer, config) -> dict | None:
    """The starting model's benchmarks, the base of the after-training deltas (`benchmarks/before/`)."""
    report = run_benchmarks(trainer, tokenizer, config, benchmark_dir(config) / "before")
    if report is None:
        return None
    log("benchmarks (lm-evaluation-harness), before training:\n" + markdown_table(report))
    return benchmark_summary(report)


def benchmarks_after_training(trainer, tokenizer, config, before: dict | None) -> dict | None:
    """The trained model's benchmarks (`benchmarks/`), and with `before`: compare.md and compare.png there (deltas
    with paired 95 % intervals), the deltas in the summary."""
    out = benchmark_dir(config)
    report = run_benchmarks(trainer, tokenizer, config, out)
    if report is None:
        return None
    log("benchmarks (lm-evaluation-harness), after training:\n" + markdown_table(report))
    summary = benchmark_summary(report)
    if before is not None and (out / "before" / "benchmarks.json").is_file():
        base = json.loads((out / "before" / "benchmarks.json").read_text())
        write_comparison(out, [("before", base, out / "before"), ("after", report, out)], "compare.png")
        log(f"benchmarks, after - before training, with paired 95 % intervals ({out / COMPARE_FILE}):\n"
            + compare_table([("before", base), ("after", report)], [report["comparison"]["deltas"]]))
        summary.update(before=before["scores"], deltas=report["comparison"]["deltas"], method=method_note(),
                       compare=f"{out.name}/{COMPARE_FILE}")
    return summary
