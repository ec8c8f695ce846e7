"""Benchmarks (MMLU, TruthfulQA, any lm-eval task) for saved models and adapters, through lm-evaluation-harness.

    python recipes/evaluate.py --model_name_or_path outputs/sft_lora --data_dir fixture   # or: instructkit eval ...
    instructkit eval --models BASE_DIR outputs/sft_full --data_dir ~/bench --apply_chat_template true

Each model is a saved model or LoRA adapter folder (evaluated on its base: the one its adapter_config.json names, or
--base). The tasks are lm-eval's own, offline on --data_dir (copies laid out like the hub: <dir>/cais/mmlu,
<dir>/truthfulqa/truthful_qa; 'fixture' = the bundled test data). Writes per model <output_dir>/<n>-<name>/
benchmarks.json (results, protocol, the equivalent `lm-eval run`), benchmarks.md; compare.md: deltas to the first.
"""

import json
from pathlib import Path

from instructkit.config.arguments import EvaluateArguments
from instructkit.config.parsing import parse_args
from instructkit.errors import user_errors
from instructkit.evaluation.harness import evaluate, prepare_tasks
from instructkit.evaluation.protocol import Protocol
from instructkit.evaluation.reports import compare_table, markdown_table


def main(argv=None):
    # Parse arguments (a YAML --config is optional; unknown keys are errors); --model_name_or_path and/or --models
    (args,) = parse_args((EvaluateArguments,), args=argv)
    models = args.model_dirs()
    protocol = Protocol(tasks=args.tasks, data_dir=args.data_dir, num_fewshot=args.num_fewshot, limit=args.limit,
                        batch_size=args.batch_size, apply_chat_template=args.apply_chat_template,
                        fewshot_as_multiturn=args.fewshot_as_multiturn, device=args.device)
    out = Path(args.output_dir)

    # Open the benchmark data before any model loads (missing data = one clear error)
    prepare_tasks(protocol, out / "lm_eval_tasks")

    # Decontamination report (optional): training rows sharing n-grams with benchmark questions
    if args.decontaminate:
        from instructkit.evaluation.decontamination import decontaminate, summary_lines

        result = decontaminate(args.decontaminate, protocol, out / "lm_eval_tasks", args.decontamination_ngram)
        print("\n".join(summary_lines(result)))
        (out / "decontamination.json").write_text(json.dumps(result, indent=2) + "\n")

    # Evaluate each model / adapter
    reports = []
    for i, model_dir in enumerate(models):
        report = evaluate(protocol, out / f"{i}-{Path(model_dir).name}", model_dir=model_dir, base=args.base)
        print(f"\n## {model_dir}\n\n{markdown_table(report)}", flush=True)
        reports.append((f"{i}:{Path(model_dir).name}", report))

    # Compare: every score, delta = model - first model
    if len(reports) > 1:
        table = compare_table(reports)
        (out / "compare.md").write_text(table + "\n")
        print(f"\n## deltas against {models[0]}\n\n{table}")
    print(f"\nresults in {out}")


if __name__ == "__main__":
    with user_errors():
        main()
