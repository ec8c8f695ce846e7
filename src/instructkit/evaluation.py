"""Held-out exact match: greedy generation through the chat template, answer must stop at end of turn.

This is the quick before/after check every SFT recipe prints. (Benchmarks such as MMLU go through
lm-evaluation-harness elsewhere; nothing here re-implements a benchmark.)
"""

from __future__ import annotations

from collections import defaultdict


def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 32,
             batch_size: int = 64) -> list[dict]:
    """Greedy answers for chat prompts (message lists) or plain string prompts, in input order."""
    import torch

    from instructkit.chat_templates import stop_token_ids

    stop_ids = stop_token_ids(tokenizer)  # the template's end-of-turn token first, then eos
    was_training, side = model.training, tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    out = []
    try:
        for start in range(0, len(conversations), batch_size):
            batch = conversations[start:start + batch_size]
            if isinstance(batch[0], str):  # plain prompt/completion data: no chat template
                enc = tokenizer(batch, padding=True, return_tensors="pt")
            else:
                enc = tokenizer.apply_chat_template(batch, add_generation_prompt=True, padding=True,
                                                    return_tensors="pt", return_dict=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
            for row in gen[:, enc["input_ids"].shape[1]:].tolist():
                end = next((i for i, t in enumerate(row) if t in stop_ids), None)
                stopped = end is not None
                row = row[:end] if stopped else row
                out.append({"text": tokenizer.decode(row, skip_special_tokens=True), "stopped": stopped})
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def generate_on_all_processes(model, tokenizer, prompts: list, max_new_tokens: int = 32, batch_size: int = 64) -> list[dict]:
    """`generate`, the prompts shared out over the launch's processes and gathered back in order on every rank.

    Every process must call it (DDP, DeepSpeed); each needs the full weights (see `runs.weights_for_generation`).
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    if state.num_processes == 1:
        return generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    # padding gives every rank the same number of prompts; the copies at the end are cut off after the gather
    with state.split_between_processes(prompts, apply_padding=True) as mine:
        answers = generate(model, tokenizer, mine, max_new_tokens, batch_size)
    return gather_object(answers)[:len(prompts)]


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
            samples.append({"prompt": row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"], "target": row["target"], **ans, "correct": ok})
    return {
        "exact_match": sum(hits) / max(len(hits), 1),
        "n": len(hits),
        "stopped": sum(a["stopped"] for a in answers) / max(len(answers), 1),
        "per_task": {t: round(sum(v) / len(v), 4) for t, v in sorted(per_task.items())},
        "samples": samples,
    }
