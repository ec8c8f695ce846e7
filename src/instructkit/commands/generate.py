"""`instructkit generate MODEL --input prompts.jsonl --output answers.jsonl`: answer every row of a file, batched
(left padding, progress bar), through the same generation code as every other answer (`evaluation.generation`)."""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.commands.options import add_model_options, load_model_for
from instructkit.data.formats import RowProblem, inference_prompt
from instructkit.data.sources import read_file
from instructkit.errors import InstructkitError
from instructkit.evaluation.generation import generate, sampling


def register(sub) -> None:
    parser = sub.add_parser("generate", help="answer every row of a JSONL file (batched, left padding)")
    add_model_options(parser)
    parser.add_argument("--input", required=True, help="JSONL/JSON/CSV/Parquet rows with 'prompt' (string or "
                                                       "messages), 'messages' (ending with a user turn) or "
                                                       "'instruction' (+ 'input')")
    parser.add_argument("--output", required=True, help="JSONL: each input row plus 'generation' and 'stopped'")
    parser.add_argument("--batch_size", type=int, default=8, help="prompts per generate call (default 8)")
    parser.set_defaults(func=run)


def run(args) -> None:
    kwargs = sampling(args.temperature, args.top_p)
    read_prompts(args.input)  # a bad input file fails before the model loads
    model, tokenizer = load_model_for(args)
    n = generate_file(model, tokenizer, args.input, args.output, args.max_new_tokens, args.batch_size, **kwargs)
    print(f"wrote {n} answers to {args.output}")


def read_prompts(path: str, chat: bool = True) -> tuple[list[dict], list]:
    """(rows, prompts) of an input file (`data.formats.inference_prompt`); bad rows stop with file, row and fix (up to 10)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InstructkitError(f"input file {path} does not exist.", fix="pass a .jsonl file with one prompt per row.")
    records = read_file(file)
    if not records:
        raise InstructkitError(f"input file {path} holds no rows.", fix="write one JSON object per line.")
    prompts, problems = [], []
    for record in records:
        try:
            prompts.append(inference_prompt(record.data, chat))
        except RowProblem as err:
            problems.append(f"{record.source} row {record.row}: field '{err.field_name}' {err.problem} — fix: {err.fix}")
    if problems:
        raise InstructkitError(f"{len(problems)} of {len(records)} rows of {path} have no usable prompt:\n  "
                               + "\n  ".join(problems[:10]), fix="correct these rows.")
    return [r.data for r in records], prompts


def generate_file(model, tokenizer, input_path: str, output_path: str, max_new_tokens: int = 256,
                  batch_size: int = 8, **generate_kwargs) -> int:
    """Answer every row of `input_path`, with a progress bar; write each row plus `generation` and `stopped` to
    `output_path` (JSONL, input order). Returns the number of rows."""
    rows, prompts = read_prompts(input_path, chat=bool(tokenizer.chat_template))
    answers = generate(model, tokenizer, prompts, max_new_tokens, batch_size,
                       progress=f"generating ({Path(input_path).name})", **generate_kwargs)
    out = Path(output_path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row, answer in zip(rows, answers):
            f.write(json.dumps({**row, "generation": answer["text"], "stopped": answer["stopped"]},
                               ensure_ascii=False) + "\n")
    return len(rows)
