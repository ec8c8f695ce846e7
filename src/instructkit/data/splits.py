"""Held-out rows: a seeded split of the training rows, and the rows exact match is measured on."""

from __future__ import annotations

import random
from collections.abc import Sequence

from instructkit.errors import InstructkitError


def split_by_size(rows: Sequence, size: float, seed: int, where: str = "the data") -> tuple[list, list]:
    """A seeded held-out split of `rows` (rows, or the indices of staged rows: the same seed holds out the same
    positions): `size` < 1 is a fraction of the rows, >= 1 a row count (which must leave rows to train on: a count as
    large as the data is refused, not cut down)."""
    if size >= 1 and int(size) >= len(rows):
        raise InstructkitError(f"test_split_size {size:g} holds out {int(size)} rows, but {where} has {len(rows)} "
                               "training rows after validation, which would leave none to train on.",
                               fix=f"set test_split_size to a count below {len(rows)} or a share below 1 "
                                   "(0.05 = 5 % of the rows), e.g. --test_split_size 0.05.")
    if len(rows) < 2:
        return list(rows), []
    n_test = int(round(len(rows) * size)) if size < 1 else int(size)
    n_test = max(1, min(n_test, len(rows) - 1))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    test = set(order[:n_test])
    return [r for i, r in enumerate(rows) if i not in test], [rows[i] for i in sorted(test)]


def exact_match_rows(dataset, limit: int, seed: int = 0) -> list[dict]:
    """Held-out rows as {prompt, target, task} for `evaluation.exact_match` (text rows have no target).

    More rows than `limit`: a seeded sample (the same rows before and after training), not the first ones, which
    in a user's file are often sorted by source or task.
    """
    rows = []
    picked = range(len(dataset)) if len(dataset) <= limit else sorted(random.Random(seed).sample(range(len(dataset)), limit))
    for row in dataset.select(picked):
        if row.get("completion") is not None or row.get("chosen") is not None:  # preference: the chosen answer
            completion = row["completion"] if row.get("completion") is not None else row["chosen"]
            target = completion[-1]["content"] if isinstance(completion, list) else completion
            rows.append({"prompt": row["prompt"], "target": target, "task": row.get("task") or "all"})
        elif row.get("messages"):  # the last answer in words (a tool call is no exact-match target)
            msgs = row["messages"]
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant" and not m.get("tool_calls")),
                       default=None)
            if last is not None:
                rows.append({"prompt": msgs[:last], "target": msgs[last]["content"], "task": row.get("task") or "all"})
    return rows
