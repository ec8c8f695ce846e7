"""Held-out exact match: greedy generation through the chat template; the answer must equal the target and stop at
the end of turn. The quick before/after check every recipe prints (benchmarks such as MMLU go through
lm-evaluation-harness in `harness`; nothing here re-implements a benchmark)."""

from __future__ import annotations

from collections import defaultdict

from instructkit.evaluation.generation import generate_on_all_processes


def exact_match(model, tokenizer, rows: list[dict], max_new_tokens: int = 32, batch_size: int = 64) -> dict:
    """rows: {"prompt": [messages], "target": str, "task": optional str}. Returns accuracy overall and per task.

    A prediction counts only when it equals the target (surrounding whitespace ignored) AND the model
    ended its turn: an answer that runs on past the end-of-turn token is wrong. Under a multi-process launch every
    process must call it; each answers its share of the rows.
    """
    answers = generate_on_all_processes(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens, batch_size)
    per_task = defaultdict(list)
    hits, samples = [], []
    for row, ans in zip(rows, answers):
        ok = ans["stopped"] and ans["text"].strip() == row["target"].strip()
        hits.append(ok)
        per_task[row.get("task", "all")].append(ok)
        if len(samples) < 8:
            samples.append({"prompt": row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"],
                            "target": row["target"], "text": ans["text"], "stopped": ans["stopped"], "correct": ok})
    return {
        "exact_match": sum(hits) / max(len(hits), 1),
        "n": len(hits),
        "stopped": sum(a["stopped"] for a in answers) / max(len(answers), 1),
        "per_task": {t: round(sum(v) / len(v), 4) for t, v in sorted(per_task.items())},
        "samples": samples,
    }
