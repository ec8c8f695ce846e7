"""`instructkit decontaminate`: n-gram overlap between training data and benchmark questions."""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.config.arguments import DEFAULT_TASKS
from instructkit.evaluation.decontamination import decontaminate, summary_lines
from instructkit.evaluation.protocol import Protocol


def register(sub) -> None:
    parser = sub.add_parser("decontaminate", help="n-gram overlap between training data and benchmark questions")
    parser.add_argument("--train", nargs="+", default=["embedded"], help="training data files/folders, or 'embedded'")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="lm-eval task, group or tag names")
    parser.add_argument("--data_dir", default=None, help="local benchmark data (hub layout) or 'fixture'")
    parser.add_argument("--ngram", type=int, default=8, help="word n-gram size (shorter questions match whole)")
    parser.add_argument("--max_rows", type=int, default=5, help="flagged rows printed per task")
    parser.add_argument("--output_dir", default="outputs/decontaminate", help="where the lm-eval task YAMLs are written")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.set_defaults(func=run)


def run(args) -> None:

    result = decontaminate(args.train, Protocol(tasks=args.tasks, data_dir=args.data_dir),
                           Path(args.output_dir) / "lm_eval_tasks", args.ngram)
    print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result, args.max_rows)))
