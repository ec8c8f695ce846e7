"""The end-of-training benchmark hook's work, timed: lm-eval on the in-memory model, as `Run.after_training_evaluations`
calls it (`instructkit.evaluation.harness.evaluate(protocol, out_dir, model=..., tokenizer=...)`).

    python benchmarks/eval_hook.py MODEL_DIR OUT_DIR [--limit N]

Prints one JSON line: seconds inside the hook, the scores and the equivalent `lm-eval run` command (for this folder).
"""

import json
import sys
import time
from pathlib import Path


def main():
    model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    limit = float(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructkit.evaluation.harness import evaluate, model_args_for
    from instructkit.evaluation.protocol import FIXTURE, Protocol
    from instructkit.evaluation.reports import scores

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    protocol = Protocol(tasks=["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"], data_dir=FIXTURE, limit=limit)
    start = time.time()
    report = evaluate(protocol, out_dir, model=model, tokenizer=tok)
    seconds = time.time() - start
    args = ",".join(f"{k}={v}" for k, v in model_args_for(model_dir).items())
    cli = report["protocol"]["cli"].replace("pretrained=<saved model dir>", args)
    print(json.dumps({"seconds": seconds, "scores": {f"{t}|{m}": v for (t, m), v in scores(report).items()},
                      "cli": cli}))


if __name__ == "__main__":
    main()
