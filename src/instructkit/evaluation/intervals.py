"""How sure a tuned − base difference is: paired bootstrap 95 % intervals from lm-eval's per-sample scores.

Two models evaluated on the same documents differ per document; resampling the documents (with replacement) and
taking the mean difference over each resample gives the spread of the delta a re-draw of the benchmark's documents
would show. The resample is *paired*: the same documents for both models, so what both get right or wrong together
cancels out (far tighter than two independent stderrs). The per-sample values are lm-eval's own (`log_samples`:
acc 0/1 per MMLU question, mc2's probability mass per TruthfulQA question), never re-scored here; an interval is
given only where lm-eval's score is the mean of them (acc, mc1, mc2, exact match), checked on the numbers.

Groups (MMLU): lm-eval's group score is the size-weighted mean of its leaf subtasks' scores (`weight_by_size:
true`; an unweighted mean of the subtasks when false). The subtask sizes are fixed by the benchmark, so the group's
resample is stratified: each subject's documents are resampled within that subject, and the replicate is the
group's own aggregate of the resampled subject means. Pooling all questions and resampling them freely would let a
subject's share of the group vary, which the group metric never does.
"""

from __future__ import annotations

import math
import zlib

ITERATIONS = 10_000
LEVEL = 0.95
SEED = 1234
_CHUNK_CELLS = 4_000_000  # indices drawn at once (iterations x documents): bounded memory for any task size


def sample_values(samples: dict) -> dict:
    """lm-eval's per-sample outputs (`simple_evaluate(log_samples=True)["samples"]`) cut down to the numbers:
    {task: {metric: {"doc_id": [...], "doc_hash": [...], "value": [...]}}}, metrics named as in `reports.scores`
    (`acc`, or `exact_match (strict-match)` for a filter other than none). Non-numeric per-sample values (corpus
    metrics such as BLEU keep (reference, prediction) pairs) are left out."""
    out: dict = {}
    for task, examples in samples.items():
        for ex in examples:
            filt = ex.get("filter", "none")
            for metric in ex.get("metrics", []):
                value = ex.get(metric)
                if isinstance(value, bool) or isinstance(value, (int, float)):
                    key = metric if filt == "none" else f"{metric} ({filt})"
                    entry = out.setdefault(task, {}).setdefault(key, {"doc_id": [], "doc_hash": [], "value": []})
                    entry["doc_id"].append(ex["doc_id"])
                    entry["doc_hash"].append(ex.get("doc_hash"))
                    entry["value"].append(float(value))
    return out


def paired_differences(base: dict, tuned: dict, task: str, metric: str):
    """tuned − base per document, in doc_id order, or (None, why not): both must hold the same documents."""
    import numpy as np

    a, b = base.get(task, {}).get(metric), tuned.get(task, {}).get(metric)
    if a is None or b is None:
        return None, "no per-sample values"
    a_docs = dict(zip(a["doc_id"], zip(a["doc_hash"], a["value"])))
    b_docs = dict(zip(b["doc_id"], zip(b["doc_hash"], b["value"])))
    if a_docs.keys() != b_docs.keys() or any(a_docs[d][0] != b_docs[d][0] for d in a_docs):
        return None, "the two runs evaluated different documents"
    docs = sorted(a_docs)
    return np.array([b_docs[d][1] - a_docs[d][1] for d in docs]), None


def bootstrap_replicates(strata: list, weights: list[float], iterations: int, rng):
    """`iterations` replicates of sum_s weights[s] * mean(strata[s] resampled with replacement within s)."""
    import numpy as np

    total = np.zeros(iterations)
    for diffs, weight in zip(strata, weights):
        n = len(diffs)
        chunk = max(1, _CHUNK_CELLS // n)
        for start in range(0, iterations, chunk):
            rows = min(chunk, iterations - start)
            idx = rng.integers(0, n, size=(rows, n))
            total[start:start + rows] += weight * diffs[idx].mean(axis=1)
    return total


def interval(strata: list, weights: list[float], key: str, iterations: int = ITERATIONS, level: float = LEVEL,
             seed: int = SEED) -> dict:
    """Delta (the weighted mean difference) and its percentile bootstrap interval. The generator is seeded from
    `seed` and `key`, so each task's interval is reproducible and does not depend on which other tasks ran."""
    import numpy as np

    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    delta = float(sum(w * d.mean() for d, w in zip(strata, weights)))
    reps = bootstrap_replicates(strata, weights, iterations, rng)
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return {"delta": delta, "low": float(low), "high": float(high), "excludes_zero": bool(low > 0 or high < 0),
            "n": int(sum(len(d) for d in strata))}


def leaf_tasks(report: dict, group: str) -> list[str]:
    """The leaf tasks under a group, through subgroups (lm-eval aggregates a group over its leaves)."""
    subtasks = report.get("group_subtasks", {})
    leaves = []
    for child in subtasks.get(group, []):
        leaves += leaf_tasks(report, child) if child in subtasks else [child]
    return leaves


def _is_mean(report: dict, samples: dict, task: str, metric: str) -> bool:
    """Whether lm-eval's score for (task, metric) is the mean of its per-sample values (else no interval)."""
    key = metric.split(" (")[0] + "," + (metric.split(" (")[1][:-1] if " (" in metric else "none")
    score = report.get("results", {}).get(task, {}).get(key)
    values = samples.get(task, {}).get(metric, {}).get("value")
    return isinstance(score, (int, float)) and bool(values) and math.isclose(score, sum(values) / len(values),
                                                                             rel_tol=1e-9, abs_tol=1e-12)


def compare(base: dict, tuned: dict, base_samples: dict, tuned_samples: dict, iterations: int = ITERATIONS,
            level: float = LEVEL, seed: int = SEED) -> dict:
    """{"task|metric": interval or {"note": why none}} for every leaf task and every group of the two reports.
    `base`/`tuned`: results records (`reports.results_record`), with their `aggregation` (group -> weight_by_size)."""
    out = {}
    leaves = sorted(t for t in tuned_samples if t in base_samples)
    for task in leaves:
        for metric in sorted(tuned_samples[task]):
            key = f"{task}|{metric}"
            diffs, why = paired_differences(base_samples, tuned_samples, task, metric)
            if diffs is not None and not (_is_mean(base, base_samples, task, metric)
                                          and _is_mean(tuned, tuned_samples, task, metric)):
                diffs, why = None, "lm-eval's score is not the mean of its per-sample values"
            out[key] = interval([diffs], [1.0], key, iterations, level, seed) if diffs is not None else {"note": why}
    for group, by_size in sorted((tuned.get("aggregation") or {}).items()):
        members = leaf_tasks(tuned, group)
        for metric in sorted({m for t in members for m in tuned_samples.get(t, {})}):
            key = f"{group}|{metric}"
            pairs = [paired_differences(base_samples, tuned_samples, t, metric) for t in members]
            if not members or any(diffs is None for diffs, _ in pairs):
                out[key] = {"note": next((why for d, why in pairs if d is None), "no subtasks")}
                continue
            strata = [diffs for diffs, _ in pairs]
            sizes = [len(d) for d in strata]
            weights = [n / sum(sizes) for n in sizes] if by_size else [1 / len(sizes)] * len(sizes)
            out[key] = {**interval(strata, weights, key, iterations, level, seed),
                        "stratified_by": "subtask", "weight_by_size": bool(by_size)}
    return out


def method_note(iterations: int = ITERATIONS, level: float = LEVEL, seed: int = SEED) -> str:
    return (f"{level:.0%} paired bootstrap intervals of tuned − base: the same documents resampled for both models, "
            f"{iterations:,} resamples, seed {seed}; groups resampled within each subtask and aggregated as lm-eval "
            "aggregates them (size-weighted mean of the subtasks). An interval that excludes 0 is a difference a "
            "re-draw of the documents would not be expected to erase.")
