"""What a run measures on its held-out data: exact match before and after training, and after training, as
configured, generation metrics and lm-eval benchmarks on the in-memory model (with a decontamination report of the
training data before training starts).
"""

from __future__ import annotations

from pathlib import Path

from instructkit.data.splits import exact_match_rows
from instructkit.distributed import weights_for_generation, weights_sharded
from instructkit.errors import InstructkitError
from instructkit.evaluation import decontamination as dc
from instructkit.evaluation.exact_match import exact_match
from instructkit.evaluation.harness import evaluate, open_tasks, prepare_tasks
from instructkit.evaluation.protocol import Protocol
from instructkit.evaluation.reports import markdown_table, scores
from instructkit.evaluation.text_metrics import format_generation_metrics, heldout_generation_metrics
from instructkit.log import is_main_process, log


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


def contamination_report(config, train_dataset) -> dict | None:
    """With benchmarks configured: n-gram overlap of the training data with their questions (main process)."""
    args = config.script
    if not args.eval_benchmarks or not is_main_process():
        return None

    names, manager = prepare_tasks(benchmark_protocol(args), benchmark_dir(config) / "lm_eval_tasks")
    questions = dc.benchmark_questions(open_tasks(manager, names)["tasks"])
    sources = [m["path"] for m in args.dataset_mixture or []] or [args.dataset_name]
    try:
        train = {str(f): dc.read_rows(f) for f in dc.training_files(sources)}
    except InstructkitError:  # a hub data set: its loaded training rows, numbered as loaded
        train = {f"{args.dataset_name} (loaded train split)": list(train_dataset)}
    result = dc.report(train, questions, args.decontamination_ngram)
    for line in dc.summary_lines(result):
        log(line)
    return result


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


def benchmarks_after_training(trainer, tokenizer, config) -> dict | None:
    """lm-eval benchmarks on the in-memory trained model (main process), or None with one line saying why not."""

    if weights_sharded(trainer):
        log("benchmarks skipped after training: the weights are sharded (FSDP / ZeRO-3), so one process cannot "
            f"run the model; evaluate the saved output: instructkit eval --models {config.training.output_dir}")
        return None
    report = evaluate(benchmark_protocol(config.script), benchmark_dir(config), model=trainer.model,
                      tokenizer=tokenizer)
    log("benchmarks (lm-evaluation-harness), after training:\n" + markdown_table(report))
    return {"scores": {f"{t}/{m}": v for (t, m), v in scores(report).items()}, "protocol": report["protocol"],
            "seconds": report["seconds"]}
