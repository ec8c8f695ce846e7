"""Paired bootstrap intervals of tuned − base deltas, checked against direct computations on small cases."""

import itertools

import numpy as np
import pytest

from instructkit.evaluation.intervals import bootstrap_replicates, compare, interval, sample_values


def exact_quantiles(strata, weights, qs):
    """The bootstrap distribution enumerated exactly: every resample of every stratum (n^n each), equally likely
    within a stratum; its quantiles by the inverted CDF."""
    per_stratum = []
    for d in strata:
        n = len(d)
        per_stratum.append([w * np.mean([d[i] for i in idx]) for w in [weights[len(per_stratum)]]
                            for idx in itertools.product(range(n), repeat=n)])
    values = np.sort([sum(combo) for combo in itertools.product(*per_stratum)])
    return [float(values[int(np.ceil(q * len(values))) - 1]) for q in qs], values


def test_task_interval_equals_the_exact_bootstrap_distribution():
    diffs = np.array([1.0, 0.0, 1.0, 1.0, 0.0, -1.0])  # tuned − base per document (acc: -1, 0 or 1)
    (low, high), values = exact_quantiles([diffs], [1.0], [0.025, 0.975])
    # the cut points sit inside an atom of the exact distribution, several Monte Carlo standard errors (0.0011 at
    # 20,000 resamples) from its edges, so the seeded resample's percentiles are exactly these values
    cdf = lambda x: np.mean(values <= x + 1e-12)  # noqa: E731
    assert min(cdf(low) - 0.025, 0.025 - cdf(low - 1 / 6), cdf(high) - 0.975, 0.975 - cdf(high - 1 / 6)) > 0.005
    got = interval([diffs], [1.0], "t|acc", iterations=20_000)
    assert got["delta"] == pytest.approx(diffs.mean())
    assert (got["low"], got["high"]) == pytest.approx((low, high))
    assert got["excludes_zero"] is (low > 0 or high < 0) and got["n"] == 6


def test_group_interval_resamples_within_subtasks_weighted_by_size():
    strata = [np.array([1.0, 1.0]), np.array([0.0, 1.0, -1.0])]
    weights = [2 / 5, 3 / 5]  # lm-eval's weight_by_size: each subject's mean times its share of the documents
    (low, high), values = exact_quantiles(strata, weights, [0.025, 0.975])
    got = interval(strata, weights, "g|acc", iterations=20_000)
    assert got["delta"] == pytest.approx(0.4)  # = the pooled mean of all 5 documents, lm-eval's group score
    assert (got["low"], got["high"]) == pytest.approx((low, high))
    # the first subject never varies (both documents +1): a free pooled resample would let its share vary
    assert (low, high) == pytest.approx((0.4 - 0.6, 0.4 + 0.6))


def test_replicates_are_one_vectorised_draw_per_stratum_seeded():
    d = np.array([0.5, -0.25, 1.0, 0.0])
    first = bootstrap_replicates([d], [1.0], 1000, np.random.default_rng(7))
    loop = np.random.default_rng(7)  # the same stream drawn one resample at a time
    assert np.allclose(first, [d[loop.integers(0, 4, size=4)].mean() for _ in range(1000)])
    again = bootstrap_replicates([d], [1.0], 1000, np.random.default_rng(7))
    assert (first == again).all()  # seeded: reproducible
    assert interval([d], [1.0], "x") == interval([d], [1.0], "x")


def record(values: dict[str, float], groups=None):
    results = {t: {"acc,none": v, "acc_stderr,none": 0.1} for t, v in values.items()}
    return {"results": results, "group_subtasks": groups or {}, "aggregation": {g: {"acc": True} for g in groups or {}}}


def samples(task_values: dict[str, list[float]], hashes=None):
    return {t: [{"doc_id": i, "doc_hash": (hashes or {}).get(t, "h")[0] + str(i), "filter": "none", "metrics": ["acc"],
                 "acc": v} for i, v in enumerate(vs)] for t, vs in task_values.items()}


def test_compare_gives_tasks_and_groups_and_says_why_not():
    base = {"a": [0, 0, 1, 1], "b": [1, 0, 0]}
    tuned = {"a": [1, 1, 1, 1], "b": [1, 1, 0]}
    groups = {"g": ["a", "b"]}
    rb = record({"a": 0.5, "b": 1 / 3, "g": 3 / 7}, groups)
    rt = record({"a": 1.0, "b": 2 / 3, "g": 6 / 7}, groups)
    found = compare(rb, rt, sample_values(samples(base)), sample_values(samples(tuned)))
    assert found["a|acc"]["delta"] == pytest.approx(0.5) and found["b|acc"]["delta"] == pytest.approx(1 / 3)
    assert found["g|acc"]["delta"] == pytest.approx(3 / 7) and found["g|acc"]["n"] == 7
    assert found["g|acc"]["stratified_by"] == "subtask" and found["a|acc"]["low"] >= 0
    # other documents on one side: no interval, and why
    other = compare(rb, rt, sample_values(samples(base)), sample_values(samples(tuned, {"a": "x"})))
    assert other["a|acc"] == {"note": "the two runs evaluated different documents"} and "note" in other["g|acc"]
    # a score that is not the mean of its per-sample values (a corpus metric) gets no interval
    off = record({"a": 0.9, "b": 2 / 3, "g": 6 / 7}, groups)
    assert "note" in compare(rb, off, sample_values(samples(base)), sample_values(samples(tuned)))["a|acc"]
