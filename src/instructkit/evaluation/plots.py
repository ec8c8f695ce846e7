"""The before/after picture of a comparison: per task, the base and tuned scores, and the tuned − base delta with its
paired 95 % interval. matplotlib is an optional extra (`pip install 'instructkit[plots]'`); without it nothing is
drawn and one line says so."""

from __future__ import annotations

from pathlib import Path

from instructkit.evaluation.reports import scores
from instructkit.log import log


def _stderr(report: dict, task: str, metric: str) -> float | None:
    name, _, filt = metric.partition(" (")
    value = report["results"].get(task, {}).get(f"{name}_stderr,{filt[:-1] if filt else 'none'}")
    return value if isinstance(value, (int, float)) else None


def rows(base: dict, tuned: dict, intervals: dict) -> list[tuple[str, float, float, float | None, float | None, dict]]:
    """(label, base score, tuned score, base stderr, tuned stderr, interval) per task/metric both reports hold;
    groups first (they are what a reader looks at), then tasks, alphabetically."""
    b, t = scores(base), scores(tuned)
    groups = set(tuned.get("group_subtasks") or {})
    keys = sorted((k for k in t if k in b), key=lambda k: (k[0] not in groups, k))
    return [(f"{task} {metric}" if metric != "acc" else task, b[(task, metric)], t[(task, metric)],
             _stderr(base, task, metric), _stderr(tuned, task, metric), intervals.get(f"{task}|{metric}") or {})
            for task, metric in keys]


def comparison_png(path: Path, labels: tuple[str, str], base: dict, tuned: dict, intervals: dict) -> Path | None:
    """Write the picture to `path`; None (with one log line) without matplotlib or without common scores."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log("comparison picture not drawn: matplotlib is not installed (pip install 'instructkit[plots]')")
        return None
    found = rows(base, tuned, intervals)
    if not found:
        return None
    fig = Figure(figsize=(11, 1.4 + 0.28 * len(found)), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=(1.2, 1))
    y = list(range(len(found)))
    for offset, (i, name, color) in ((-0.15, (1, labels[0], "#999999")), (0.15, (2, labels[1], "#2a77bb"))):
        values = [r[i] for r in found]
        errors = [1.96 * (r[i + 2] or 0) for r in found]
        left.errorbar(values, [v + offset for v in y], xerr=errors, fmt="o", ms=4, color=color, capsize=2,
                      label=f"{name} (± 1.96 stderr)")
    left.set_yticks(y, [r[0] for r in found], fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("score")
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)
    for yi, r in zip(y, found):
        ci = r[5]
        delta = ci.get("delta", r[2] - r[1])
        color = "#2a7a2a" if ci.get("excludes_zero") and delta > 0 else \
            "#b22222" if ci.get("excludes_zero") else "#666666"
        if "low" in ci:
            right.plot([ci["low"], ci["high"]], [yi, yi], color=color, lw=2)
        right.plot([delta], [yi], "o", color=color, ms=4)
    right.axvline(0, color="black", lw=0.8)
    right.set_xlabel(f"{labels[1]} − {labels[0]} (paired bootstrap 95 % interval)")
    right.grid(alpha=0.3)
    fig.suptitle(f"{labels[0]} vs {labels[1]}: green / red = the interval excludes 0", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
