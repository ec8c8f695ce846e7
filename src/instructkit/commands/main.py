"""`instructkit` command line: find and copy recipes, use what they trained, build or inspect the embedded default.

    instructkit list                 # recipes x configs x launch configs, with the command for each
    instructkit cp RECIPE DEST       # copy a recipe, its config and launch configs into DEST, to own and edit
    instructkit merge ADAPTER OUT    # LoRA/QLoRA adapter + full-precision base -> one model; logits checked
    instructkit chat MODEL           # interactive chat through the chat template, streamed (/reset, /exit)
    instructkit generate MODEL --input prompts.jsonl --output answers.jsonl
                                     # batched answers (left padding, progress bar); rows: prompt / messages / instruction
    instructkit serve MODEL [--port 8000]
                                     # OpenAI-compatible server (127.0.0.1): /v1/chat/completions, /v1/completions
    instructkit embedded [--json]    # build the embedded default if needed, print where it is and what it holds
    instructkit inspect [--config x.yaml] [-n 3] [--key value ...]
                                     # tokenized rows with trained tokens marked, statistics, preflight checks
    instructkit eval --models DIR [DIR ...] [--data_dir fixture] [--key value ...]
                                     # lm-eval benchmarks (recipes/evaluate.py): tables, deltas against the first
    instructkit decontaminate [--train FILE ...] [--tasks ...] [--data_dir DIR]
                                     # n-gram overlap of training data with benchmark questions
    instructkit estimate --config x.yaml [--launch ACCELERATE_CONFIG] [--gpus N --gpu-memory 24GB]
                                     # memory per device (weights, gradients, optimizer, activations), fits or not

MODEL is a run's output folder (a full model, or an adapter: merged into its base in memory), a hub name, or
`embedded`. Generation is greedy unless --temperature > 0. Heavy imports happen inside each command.
"""

from __future__ import annotations

import argparse
import sys

from instructkit.commands import (
    chat,
    cp,
    decontaminate,
    embedded,
    estimate,
    evaluate,
    generate,
    inspect,
    list_recipes,
    merge,
    serve,
)
from instructkit.config.ranges import range_problem
from instructkit.errors import InstructkitError, user_errors

# in the order `instructkit --help` lists them; each module registers its parser and runs it (heavy imports inside)
SUBCOMMANDS = (list_recipes, cp, merge, chat, generate, serve, embedded, inspect, evaluate, decontaminate, estimate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instructkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, args.overrides = parser.parse_known_args(argv)  # recipe overrides, checked by the recipe parser
    if args.overrides and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
    try:
        with user_errors():
            check_ranges(args)
            args.func(args)
    except BrokenPipeError:  # the reader went away (`instructkit list | head`): stop quietly, as Unix tools do
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        sys.exit(141)  # 128 + SIGPIPE


def check_ranges(args) -> None:
    """The command's own numeric options against their ranges (`config.ranges`), every problem in one error; the
    recipe overrides some commands pass on are checked by the recipe's parser."""
    problems = [f"'{'-' if len(key) == 1 else '--'}{key}' on the command line: {problem}"
                for key, value in vars(args).items() if (problem := range_problem(key, value))]
    if problems:
        raise InstructkitError("; ".join(problems) + ".", fix=f"run instructkit {args.command} --help.")


if __name__ == "__main__":
    main(sys.argv[1:])
