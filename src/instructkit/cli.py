"""`instructkit` command line: list the recipes and build or inspect the embedded default.

    instructkit list                 # recipes x configs x launch configs, with the command for each
    instructkit embedded [--json]    # build the embedded default if needed, print where it is and what it holds
    instructkit inspect [--config x.yaml] [-n 3] [--key value ...]
                                     # tokenized rows with trained tokens marked, statistics, preflight checks
    instructkit eval --models DIR [DIR ...] [--data_dir fixture] [--key value ...]
                                     # lm-eval benchmarks (recipes/evaluate.py): tables, deltas against the first
    instructkit decontaminate [--train FILE ...] [--tasks ...] [--data_dir DIR]
                                     # n-gram overlap of training data with benchmark questions
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from instructkit.errors import user_errors

REPO_ROOT = Path(__file__).resolve().parents[2]


def recipes_dir() -> Path:
    """The recipes next to the source checkout (editable install), or in the current directory."""
    for candidate in (REPO_ROOT / "recipes", Path.cwd() / "recipes"):
        if candidate.is_dir():
            return candidate
    from instructkit.errors import InstructkitError

    raise InstructkitError("no recipes/ folder found next to the instructkit sources or in the current directory.",
                           fix="run from a checkout of instructkit (pip install -e .).")


def cmd_list(_args) -> None:
    recipes = recipes_dir()
    launch = sorted((recipes.parent / "accelerate_configs").glob("*.yaml"))
    for script in sorted(recipes.glob("*.py")):
        for config in sorted((recipes / "configs").glob(f"{script.stem}*.yaml")):
            rel = lambda p: p.relative_to(recipes.parent)  # noqa: E731
            print(f"{script.stem:<10} {rel(config)!s:<34} accelerate launch {rel(script)} --config {rel(config)}")
    if launch:
        print("\nlaunch configs (add --config_file <file> after 'accelerate launch'):")
        for cfg in launch:
            print(f"  {cfg.relative_to(recipes.parent)}")


def cmd_embedded(args) -> None:
    from instructkit.embedded import ensure_embedded

    assets = ensure_embedded()
    info = {"model_dir": str(assets.model_dir), "data_dir": str(assets.data_dir), **assets.info}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"model:   {info['model_dir']}  ({info['parameters']:,} parameters, pretraining loss {info['pretrain_loss']})")
    print(f"data:    {info['data_dir']}  (train / test: unseen arguments / test_phrasings: unseen phrasings)")
    print(f"built in {info['build_seconds']} s; weights sha256 {info['weights_sha256'][:16]}")


def cmd_inspect(args) -> None:
    from instructkit.inspection import inspect_config

    inspect_config((["--config", args.config] if args.config else []) + args.overrides, n=args.n)


def cmd_eval(args) -> None:
    """recipes/evaluate.py's main, with the arguments after `eval`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("instructkit_recipe_evaluate", recipes_dir() / "evaluate.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main(args.overrides)


def cmd_decontaminate(args) -> None:
    from pathlib import Path

    from instructkit.benchmarks import Protocol
    from instructkit.decontamination import decontaminate, summary_lines

    result = decontaminate(args.train, Protocol(tasks=args.tasks, data_dir=args.data_dir),
                           Path(args.output_dir) / "lm_eval_tasks", args.ngram)
    print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result, args.max_rows)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="instructkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="recipes x configs x launch configs").set_defaults(func=cmd_list)
    emb = sub.add_parser("embedded", help="build (if needed) and describe the embedded default")
    emb.add_argument("--json", action="store_true", help="print the build record as JSON")
    emb.set_defaults(func=cmd_embedded)
    ins = sub.add_parser("inspect", help="show what a recipe config trains on: tokenized rows with the trained "
                                         "tokens marked, per-split statistics, preflight checks",
                         description="Any other --key value is a recipe override, as on a recipe's command line.",
                         allow_abbrev=False)
    ins.add_argument("--config", help="recipe YAML config (default: the embedded default's settings)")
    ins.add_argument("-n", type=int, default=3, help="number of training rows to print (default 3)")
    ins.set_defaults(func=cmd_inspect)
    sub.add_parser("eval", add_help=False, help="benchmarks through lm-evaluation-harness (recipes/evaluate.py; "
                                                 "its --help lists the keys)").set_defaults(func=cmd_eval)
    dec = sub.add_parser("decontaminate", help="n-gram overlap between training data and benchmark questions")
    dec.add_argument("--train", nargs="+", default=["embedded"], help="training data files/folders, or 'embedded'")
    dec.add_argument("--tasks", nargs="+", default=["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"],  # DEFAULT_TASKS
                     help="lm-eval task, group or tag names")
    dec.add_argument("--data_dir", default=None, help="local benchmark data (hub layout) or 'fixture'")
    dec.add_argument("--ngram", type=int, default=8, help="word n-gram size (shorter questions match whole)")
    dec.add_argument("--max_rows", type=int, default=5, help="flagged rows printed per task")
    dec.add_argument("--output_dir", default="outputs/decontaminate", help="where the lm-eval task YAMLs are written")
    dec.add_argument("--json", action="store_true", help="print the full report as JSON")
    dec.set_defaults(func=cmd_decontaminate)
    args, args.overrides = parser.parse_known_args(argv)  # recipe overrides, checked by the recipe parser
    if args.overrides and args.command not in ("inspect", "eval"):
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
    with user_errors():
        args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
