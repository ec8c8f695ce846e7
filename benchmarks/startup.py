"""Start-up: time from the launch command to the first training step, read from the throughput runs (section 1):
round 0 runs cold (new datasets cache and output folders, first use of the files), rounds 1+ warm. For instructkit the
phases come from the recipe's own log lines; the other arms give their totals for comparison."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median  # noqa: E402

PHASES = [("config parsed, libraries imported", "[instructkit] sft_full on"),
          ("data read, validated, converted", "[instructkit] data: format="),
          ("tokenizer + model loaded, TRL tokenized the rows", "[instructkit] preflight"),
          ("held-out exact match before training (off in these runs)", "[instructkit] before training:")]


def phases(res: dict) -> list[tuple[str, float]]:
    """Seconds per phase from the times the recipe's log lines arrived; the rest until the probe saw step 1."""
    out, last = [], 0.0
    for label, marker in PHASES:
        t = next((t for t, line in res["lines"] if line.startswith(marker)), None)
        if t is not None:
            out.append((label, t - last))
            last = t
    out.append(("trainer set-up until the first step starts", res["probe"][0]["first_step_s"] - last))
    return out


def from_throughput(thr: dict) -> dict:
    runs = thr["runs"]
    ik = runs["instructkit"]
    out = {"cold": {"first_step_s": ik[0]["first_step_s"], "phases": ik[0]["phases"]}}
    warm = ik[1:]
    if warm:
        labels = [p[0] for p in warm[0]["phases"]]
        out["warm (median)"] = {"first_step_s": median([w["first_step_s"] for w in warm]),
                                "phases": [(label, median([w["phases"][i][1] for w in warm]))
                                           for i, label in enumerate(labels)]}
    others = {arm: {"cold": rs[0]["first_step_s"], "warm": median([r["first_step_s"] for r in rs[1:]])}
              for arm, rs in runs.items()}
    return {"runs": out, "arms": others, "rows": thr["rows"]}
