"""The in-training benchmark hook's work, timed: lm-eval on the in-memory model, as a recipe run calls it
(`instructkit.evaluation.harness.evaluate(protocol, out_dir, model=..., tokenizer=..., prepared=...)`).

    python benchmarks/eval_hook.py MODEL_DIR OUT_DIR [--limit N] [--data_dir DIR] [--calls 2]

The first call prepares the tasks (index, data, YAMLs) as the first benchmark of a run does; later calls reuse them
and the encodings, as the benchmarks during training (`benchmark_steps`) and after it do. Prints one JSON line: per
call the seconds, scores and every number (scores and stderrs, lm-eval's keys); the first call's under `seconds` / `scores`; the equivalent `lm-eval run`.
"""

import json
import sys
import time
from pathlib import Path


def option(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main():
    model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    limit = float(option("--limit")) if option("--limit") else None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructkit.evaluation.harness import evaluate, model_args_for, prepare_tasks
    from instructkit.evaluation.protocol import FIXTURE, Protocol
    from instructkit.evaluation.reports import scores

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    protocol = Protocol(tasks=["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"], data_dir=option("--data_dir", FIXTURE),
                        limit=limit)
    calls, prepared = [], None
    for i in range(int(option("--calls", 1))):
        start = time.time()
        prepared = prepared or prepare_tasks(protocol, out_dir / "lm_eval_tasks")
        report = evaluate(protocol, out_dir / f"call-{i}", model=model, tokenizer=tok, prepared=prepared)
        calls.append({"seconds": time.time() - start,
                      "scores": {f"{t}|{m}": v for (t, m), v in scores(report).items()},
                      "numbers": {f"{t}|{k}": v for t, r in report["results"].items() for k, v in r.items()
                                  if "," in k and isinstance(v, (int, float)) and not isinstance(v, bool)}})
    args = ",".join(f"{k}={v}" for k, v in model_args_for(model_dir).items())
    cli = report["protocol"]["cli"].replace("pretrained=<saved model dir>", args)
    print(json.dumps({"seconds": calls[0]["seconds"], "scores": calls[0]["scores"], "calls": calls, "cli": cli}))


if __name__ == "__main__":
    main()
