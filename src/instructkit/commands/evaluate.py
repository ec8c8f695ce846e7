"""`instructkit eval ...`: the benchmark recipe (recipes/evaluate.py, as shipped), with the arguments after `eval`."""

from __future__ import annotations

from instructkit.catalog import RECIPES_PACKAGE, recipe_file


def register(sub) -> None:
    sub.add_parser("eval", add_help=False, help="benchmarks through lm-evaluation-harness (recipes/evaluate.py; "
                                                "its --help lists the keys)").set_defaults(func=run, takes_overrides=True)


def run(args) -> None:
    import importlib

    recipe_file("evaluate")  # a clear error if the install lacks it
    importlib.import_module(f"{RECIPES_PACKAGE}.evaluate").main(args.overrides)
