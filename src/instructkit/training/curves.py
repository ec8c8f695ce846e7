"""Training curves as a PNG next to the run: loss, learning rate, gradient norm, accuracies, rewards, eval metrics,
benchmark scores (before, during with `benchmark_steps`, after training).

Read from the Trainer's `log_history` in `metrics.json`, so any finished run can be plotted again. matplotlib is an
optional extra (`pip install 'instructkit[plots]'`); without it the run logs one line and goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.log import log
from instructkit.paths import atomic_path

CURVES_FILE = "training_curves.png"
# Keys that describe the logging itself, not the model
_NOT_CURVES = ("epoch", "step", "total_flos", "num_input_tokens_seen")
_NOT_CURVE_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second", "num_tokens")
_NOT_CURVE_PARTS = ("entropy", "logps/", "logits/")  # TRL diagnostics on scales that would flatten the rest


def panels(log_history: list[dict]) -> list[tuple[str, dict[str, list[tuple[int, float]]]]]:
    """[(title, {key: [(step, value), ...]})] for every panel that has data, in a fixed order."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            if (step is None or key in _NOT_CURVES or key.endswith(_NOT_CURVE_SUFFIXES) or key.startswith("train_")
                    or any(part in key for part in _NOT_CURVE_PARTS)
                    or isinstance(value, bool) or not isinstance(value, (int, float))):
                continue
            series.setdefault(key, []).append((step, float(value)))
    groups = [("loss", ["loss", "eval_loss"]), ("learning rate", ["learning_rate"]), ("gradient norm", ["grad_norm"]),
              ("accuracy", [k for k in series if "accurac" in k]),
              ("rewards (DPO)", [k for k in series if "rewards/" in k and "accurac" not in k])]
    taken = {k for _, keys in groups for k in keys}
    groups.append(("eval metrics", [k for k in series if k.startswith("eval_") and k not in taken]))
    groups.append(("benchmarks (lm-eval)", [k for k in series if k.startswith("benchmarks/")]))
    return [(title, {k: series[k] for k in keys if k in series}) for title, keys in groups
            if any(k in series for k in keys)]


def plot_training_curves(out_dir: Path) -> Path | None:
    """Write `<out_dir>/training_curves.png` from `<out_dir>/metrics.json`; None (with one log line) when
    matplotlib is missing or nothing was logged."""
    out_dir = Path(out_dir)
    history = json.loads((out_dir / "metrics.json").read_text()).get("log_history") or []
    found = panels(history)
    if not found:
        log("training curves not plotted: nothing was logged (set logging_steps)")
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log("training curves not plotted: matplotlib is not installed (pip install 'instructkit[plots]')")
        return None
    columns = min(len(found), 3)
    rows = -(-len(found) // columns)
    fig = Figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (title, curves) in enumerate(found):
        ax = fig.add_subplot(rows, columns, i + 1)
        for key, points in curves.items():
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(curves) > 1 or title not in curves:
            ax.legend(fontsize=8)
    fig.suptitle(out_dir.name)
    path = out_dir / CURVES_FILE
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=100, format="png")
    log(f"training curves: {path} ({', '.join(title for title, _ in found)})")
    return path
