"""Held-out generation metrics for instruction data: response perplexity, exact match, ROUGE-L, BLEU.

`evaluate.load("rouge"/"bleu")` needs the hub for its metric scripts, so the packages it wraps are called directly:
`rouge_score` (ROUGE-L F1 with the Porter stemmer, as `evaluate`'s rouge) and `sacrebleu` (corpus BLEU), plus
lm-eval's local port of `evaluate`'s exact_match. Perplexity is exp(mean token NLL) of the reference responses given
their prompts through the chat template: the model's own loss over the response tokens, prompt tokens masked.
"""

from __future__ import annotations

import math

from instructkit.errors import InstructkitError
from instructkit.evaluation.generation import generate


def text_scores(predictions: list[str], references: list[str]) -> dict:
    """exact match (after stripping whitespace), mean ROUGE-L F1 (0-1) and corpus BLEU (0-100)."""
    import numpy as np
    import sacrebleu
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from rouge_score import rouge_scorer

    if len(predictions) != len(references) or not predictions:
        raise InstructkitError(f"text_scores needs as many predictions as references, at least one "
                               f"(got {len(predictions)} and {len(references)}).", fix="pass aligned lists.")
    preds, refs = [p.strip() for p in predictions], [r.strip() for r in references]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge_l = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
    return {"exact_match": float(exact_match_hf_evaluate(preds, refs)["exact_match"]),
            "rouge_l": float(np.mean(rouge_l)),
            "bleu": float(sacrebleu.corpus_bleu(preds, [refs]).score),
            "n": len(preds)}


def response_token_masks(tokenizer, prompt, response: str) -> tuple[list[int], int]:
    """(token ids of prompt + response + end of turn, number of leading prompt tokens) through the chat template."""
    if isinstance(prompt, str):  # plain prompt/completion data
        ids = tokenizer(prompt)["input_ids"]
        full = tokenizer(prompt + response)["input_ids"]
        return full, len(ids) if full[:len(ids)] == ids else 0
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
    full_ids = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=True,
                                             return_dict=True)
    prompt_ids, full_ids = list(prompt_ids["input_ids"]), list(full_ids["input_ids"])
    if full_ids[:len(prompt_ids)] != prompt_ids:
        raise InstructkitError("the chat template renders the prompt differently with and without the answer, so the "
                               "response tokens cannot be told apart for perplexity.",
                               fix="use a template whose generation prompt is a prefix of the full conversation.")
    return full_ids, len(prompt_ids)


def response_perplexity(model, tokenizer, rows: list[dict], batch_size: int = 16) -> dict:
    """rows: {"prompt": messages or str, "target": str}. Perplexity of the targets, token-weighted over all rows."""
    import torch

    was_training = model.training
    model.eval()
    total_nll, total_tokens = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        for start in range(0, len(rows), batch_size):
            encoded = [response_token_masks(tokenizer, r["prompt"], r["target"]) for r in rows[start:start + batch_size]]
            width = max(len(ids) for ids, _ in encoded)
            input_ids = torch.full((len(encoded), width), pad)
            labels = torch.full((len(encoded), width), -100)
            attention = torch.zeros((len(encoded), width), dtype=torch.long)
            for i, (ids, n_prompt) in enumerate(encoded):
                input_ids[i, :len(ids)] = torch.tensor(ids)
                attention[i, :len(ids)] = 1
                labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
            with torch.no_grad():
                logits = model(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)).logits
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                                    labels[:, 1:].flatten().to(model.device),
                                                    ignore_index=-100, reduction="sum")
            total_nll += float(nll)
            total_tokens += int((labels[:, 1:] != -100).sum())
    finally:
        model.train(was_training)
    mean = total_nll / max(total_tokens, 1)
    return {"perplexity": math.exp(mean), "mean_nll": mean, "tokens": total_tokens}


def heldout_generation_metrics(model, tokenizer, rows: list[dict], max_new_tokens: int = 32,
                               batch_size: int = 16) -> dict:
    """Greedy answers to the held-out prompts scored against the references, plus response perplexity."""

    answers = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens, batch_size)
    scores = text_scores([a["text"] for a in answers], [r["target"] for r in rows])
    return {**scores, **response_perplexity(model, tokenizer, rows, batch_size)}


def format_generation_metrics(label: str, results: dict) -> str:
    return f"{label}: " + ", ".join(
        f"{split} perplexity {r['perplexity']:.2f}, exact match {r['exact_match']:.1%}, ROUGE-L {r['rouge_l']:.3f}, "
        f"BLEU {r['bleu']:.1f} (n={r['n']})" for split, r in results.items())
