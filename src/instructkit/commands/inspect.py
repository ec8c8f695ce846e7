"""`instructkit inspect`: see what a config will train on (which tokens carry loss) before spending compute on it.

The config is read as an SFT recipe reads it (`training.sft`: YAML + `--key value` overrides, data validation,
tokenizer and chat template, loss mask). TRL's `SFTTrainer` then tokenizes and masks every split exactly as in training: TRL
has no public function for that (`SFTTrainer._prepare_dataset` is private and reads state set in `__init__`), so
the trainer is built with the model, loaded without quantization or adapters, which do not change the data. Packing
is switched off so that rows stay rows. Prints N training rows with the trained tokens highlighted, statistics per
split, and the preflight checks' verdict (a failing check exits with its reason and fix, after the printout).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

from instructkit.chat_templates import describe
from instructkit.modeling.loading import load_model, load_tokenizer
from instructkit.training import preflight

MARK_TTY = ("\x1b[1;32m", "\x1b[0m")  # bold green
MARK_PLAIN = ("⟦", "⟧")
PERCENTILES = (50, 90, 99)


def register(sub) -> None:
    parser = sub.add_parser("inspect", help="show what a recipe config trains on: tokenized rows with the trained "
                                            "tokens marked, per-split statistics, preflight checks",
                            description="Any other --key value is a recipe override, as on a recipe's command line.",
                            allow_abbrev=False)
    parser.add_argument("--config", help="recipe YAML config (default: the embedded default's settings)")
    parser.add_argument("-n", type=int, default=3, help="number of training rows to print (default 3)")
    parser.set_defaults(func=run, takes_overrides=True)


def run(args) -> None:
    inspect_config((["--config", args.config] if args.config else []) + args.overrides, n=args.n)


def use_color(out) -> bool:
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def highlight(tokenizer, input_ids: list[int], labels: list[int], marks: tuple[str, str]) -> str:
    """The row's text with every run of trained tokens wrapped in `marks`."""
    pieces, run, trained = [], [], None
    for token, label in [*zip(input_ids, labels), (None, None)]:
        is_trained = label is not None and label != preflight.IGNORE
        if run and (token is None or is_trained != trained):
            text = tokenizer.decode(run, skip_special_tokens=False)
            pieces.append(f"{marks[0]}{text}{marks[1]}" if trained else text)
            run = []
        run.append(token)
        trained = is_trained
    return "".join(pieces)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile."""
    if not sorted_values:
        return 0
    return sorted_values[max(0, math.ceil(len(sorted_values) * q / 100) - 1)]


def split_lines(name: str, rows_in: int, prepared, max_length: int | None) -> list[str]:
    s = preflight.token_stats(prepared, max_length)
    lengths = sorted(s["lengths"])
    share = s["trained_tokens"] / max(s["tokens"], 1)
    dropped = rows_in - s["rows"]
    lines = [f"{name}: {rows_in} rows -> {s['rows']} tokenized, {s['tokens']:,} tokens, "
             f"{s['trained_tokens']:,} trained ({share:.1%})",
             f"  length p50/p90/p99/max: " + "/".join(str(percentile(lengths, q)) for q in PERCENTILES)
             + f"/{lengths[-1] if lengths else 0}" + (f" (max_length {max_length})" if max_length else "")]
    if dropped:
        lines.append(f"  dropped: {dropped} (prompt fills max_length={max_length}, no trained token left)")
    lines.append(f"  truncated: {s['rows_at_max_length']} (reach max_length)" if max_length else "  truncated: 0")
    return lines


def inspect_config(argv: list[str], n: int = 3, out=None) -> dict:
    """Print `n` tokenized training rows with the trained tokens marked, and statistics per split.

    `argv`: recipe arguments (`--config x.yaml`, `--key value` ...). Returns the preflight result.
    """
    from trl import SFTTrainer

    from instructkit.training.sft import load_sft_data, parse_sft_config, resolve_sft  # heavy: TRL's callbacks

    out = out or sys.stdout
    config = parse_sft_config(argv, check_output=False)
    data = load_sft_data(config)
    tokenizer, _ = load_tokenizer(config)
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer creates output_dir; inspecting writes nothing
        # rows stay rows: shown and counted unpacked
        shown = config.replace(training={"packing": False, "eval_packing": False, "padding_free": False,
                                         "output_dir": scratch, "push_to_hub": False})
        shown = resolve_sft(shown, data.report, tokenizer)
        trainer = SFTTrainer(model=load_model(shown, tokenizer), args=shown.training, processing_class=tokenizer,
                             train_dataset=data.train, eval_dataset=data.held_out or None)
    prepared = {"train": trainer.train_dataset, **(trainer.eval_dataset or {})}
    print_rows(tokenizer, prepared["train"], n, out)
    print("== statistics", file=out)
    print(f"format: {data.report.format}, max_length: {shown.training.max_length}, "
          f"loss on: {_loss_on(shown.training)}", file=out)
    if config.training.packing:
        print(f"(the config packs rows into sequences of max_length with packing_strategy="
              f"{config.training.packing_strategy}; shown and counted unpacked)", file=out)
    for name, dataset in prepared.items():
        for line in split_lines(name, len(data.splits[name]), dataset, shown.training.max_length):
            print(line, file=out)
    if data.report.skipped:
        print("skipped before tokenization (on_bad_rows: skip): " + ", ".join(
            f"{reason}: {k}" for reason, k in data.report.skipped.most_common()), file=out)
    print_template(config, tokenizer, trainer, out)
    result = preflight.check(trainer, data.report)
    print(preflight.summary(result), file=out)
    return result


def print_template(config, tokenizer, trainer, out) -> None:
    """The chat template training renders with (TRL's training variant when it swaps one in), and where it came from;
    the tokenizer's template is what is saved with the output (chat_template.jinja)."""
    used = getattr(trainer, "chat_template", None) or tokenizer.chat_template
    source = (f"chat_template: {describe(config.script.chat_template)}" if config.script.chat_template
              else "the tokenizer's own")
    swapped = " (TRL's training variant of it)" if used != tokenizer.chat_template else ""
    print(f"== chat template used for training: {source}{swapped}", file=out)
    print(used if isinstance(used, str) else "(none: plain text rows)", file=out)


def print_rows(tokenizer, prepared, n: int, out) -> None:
    """The first `n` prepared rows, trained tokens marked (green on a terminal, brackets otherwise)."""
    marks = MARK_TTY if use_color(out) else MARK_PLAIN
    legend = "trained tokens in green" if marks is MARK_TTY else f"trained tokens between {marks[0]} and {marks[1]}"
    print(f"== {min(n, len(prepared))} training rows ({legend})", file=out)
    for i, row in enumerate(prepared.select(range(min(n, len(prepared))))):
        trained = sum(label != preflight.IGNORE for label in row["labels"])
        print(f"-- tokenized row {i}: {len(row['input_ids'])} tokens, {trained} trained", file=out)
        print(highlight(tokenizer, row["input_ids"], row["labels"], marks), file=out)


def _loss_on(args) -> str:
    if args.assistant_only_loss and args.completion_only_loss:
        return "the completion's assistant content and end-of-turn token"
    if args.assistant_only_loss:
        return "assistant turns (content and end-of-turn token)"
    if args.completion_only_loss:
        return "the completion"
    return "every token"
