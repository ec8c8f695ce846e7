"""Benchmarks (MMLU, TruthfulQA, any lm-eval task) for saved models and adapters, through lm-evaluation-harness.

    python recipes/evaluate.py --model_name_or_path outputs/sft_lora --data_dir fixture   # or: instructkit eval ...
    instructkit eval --models BASE_DIR outputs/sft_full --data_dir ~/bench --apply_chat_template true

Each model is a saved model or LoRA adapter folder (on its base: the one its adapter_config.json names, or --base).
Tasks are lm-eval's own, offline on --data_dir (hub layout; 'fixture' = bundled test data); --backend vllm on GPUs.
Writes per model <output_dir>/<n>-<name>/benchmarks.json (+ the equivalent `lm-eval run`), benchmarks.md, samples.json;
with several models, compare.md (deltas to the first, paired bootstrap 95 % intervals) and a PNG per comparison.
"""

import json
from pathlib import Path

from tqdm import tqdm

from instructkit.config.arguments import EvaluateArguments
from instructkit.config.parsing import parse_args
from instructkit.errors import user_errors
from instructkit.evaluation.comparison import write_comparison
from instructkit.evaluation.harness import evaluate, prepare_tasks
from instructkit.evaluation.protocol import Protocol
from instructkit.evaluation.reports import markdown_table


def main(argv=None):
    # Parse arguments (a YAML --config is optional; unknown keys are errors); --model_name_or_path and/or --models
    (args,) = parse_args((EvaluateArguments,), args=argv)
    models = args.model_dirs()
    protocol = Protocol.from_arguments(args)
    out = Path(args.output_dir)

    # Open the benchmark data before any model loads (missing data = one clear error); built once for all models
    prepared = prepare_tasks(protocol, out / "lm_eval_tasks")

    # Decontamination report (optional): training rows sharing n-grams with benchmark questions
    if args.decontaminate:
        from instructkit.evaluation.decontamination import decontaminate, summary_lines

        result = decontaminate(args.decontaminate, protocol, out, args.decontamination_ngram, prepared)
        print("\n".join(summary_lines(result)))
        (out / "decontamination.json").write_text(json.dumps(result, indent=2) + "\n")

    # Evaluate each model / adapter (a bar over the models; lm-eval's own per task)
    runs = []
    for i, model_dir in enumerate(tqdm(models, desc="models", unit="model")):
        folder = out / f"{i}-{Path(model_dir).name}"
        report = evaluate(protocol, folder, model_dir=model_dir, base=args.base, prepared=prepared)
        print(f"\n## {model_dir}\n\n{markdown_table(report)}", flush=True)
        runs.append((f"{i}:{Path(model_dir).name}", report, folder))

    # Compare: delta = model - first model, its paired 95 % interval, a picture per comparison
    if len(runs) > 1:
        print(f"\n{write_comparison(out, runs)}")
    print(f"\nresults in {out}")


if __name__ == "__main__":
    with user_errors():
        main()
