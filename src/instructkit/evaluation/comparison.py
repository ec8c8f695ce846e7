"""A comparison of models on the same benchmarks, as saved: compare.md (scores, deltas against the first model, their
paired 95 % intervals and whether each excludes 0), a before/after PNG per comparison, and the deltas in each later
model's benchmarks.json (`comparison`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from instructkit.evaluation.intervals import compare, method_note
from instructkit.evaluation.plots import comparison_png
from instructkit.evaluation.reports import compare_markdown, load_samples

COMPARE_FILE = "compare.md"


def picture_name(label: str) -> str:
    return "compare-" + re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") + ".png"


def write_comparison(out_dir: Path, runs: list[tuple[str, dict, Path]], picture: str | None = None) -> str:
    """`runs`: (label, results record, the folder its benchmarks.json and samples.json are in), the base first.
    Writes `<out_dir>/compare.md` and the pictures (`picture` names the one of a single comparison); returns the
    markdown."""
    out_dir = Path(out_dir)
    base_label, base, base_dir = runs[0]
    base_samples = load_samples(base_dir)
    intervals, pictures = [], []
    for label, report, model_dir in runs[1:]:
        samples = load_samples(model_dir)
        found = compare(base, report, base_samples, samples) if base_samples and samples else {}
        intervals.append(found)
        name = picture if picture and len(runs) == 2 else picture_name(label)
        drawn = comparison_png(out_dir / name, (base_label, label), base, report, found)
        pictures += [name] if drawn else []
        report["comparison"] = {"against": base_label, "base_model": base["protocol"]["model"],
                                "base_adapter": base["protocol"]["adapter"], "method": method_note(),
                                "deltas": found}
        (Path(model_dir) / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = compare_markdown([(label, report) for label, report, _ in runs], intervals, pictures, method_note())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / COMPARE_FILE).write_text(text)
    return text
