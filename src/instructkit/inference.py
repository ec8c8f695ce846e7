"""Answering prompts with a trained model: from a file in batches (`instructkit generate`) or interactively with
streamed tokens (`instructkit chat`). The HTTP endpoint (`instructkit serve`) is in `serving`.

Loading is `modeling.load_for_inference` (an adapter is merged into its full-precision base in memory) and
generation is `evaluation.generate`, the code the held-out exact match uses: prompts through the model's chat
template, left padding, answers cut at the template's end-of-turn token.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import TextStreamer

from instructkit.errors import InstructkitError


def sampling(temperature: float = 0.0, top_p: float = 1.0) -> dict:
    """`model.generate` keywords: greedy at temperature 0 (reproducible), else sampling."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise InstructkitError(f"temperature {temperature} / top_p {top_p} out of range.",
                               fix="use temperature >= 0 (0 = greedy) and 0 < top_p <= 1.")
    return {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature, "top_p": top_p}


def read_prompts(path: str, chat: bool = True) -> tuple[list[dict], list]:
    """(rows, prompts) of an input file (`data.inference_prompt`); bad rows stop with file, row and fix (up to 10)."""
    from instructkit import data

    file = Path(path).expanduser()
    if not file.is_file():
        raise InstructkitError(f"input file {path} does not exist.", fix="pass a .jsonl file with one prompt per row.")
    records = data.read_file(file)
    if not records:
        raise InstructkitError(f"input file {path} holds no rows.", fix="write one JSON object per line.")
    prompts, problems = [], []
    for record in records:
        try:
            prompts.append(data.inference_prompt(record.data, chat))
        except data.RowProblem as err:
            problems.append(f"{record.source} row {record.row}: field '{err.field_name}' {err.problem} — fix: {err.fix}")
    if problems:
        raise InstructkitError(f"{len(problems)} of {len(records)} rows of {path} have no usable prompt:\n  "
                               + "\n  ".join(problems[:10]), fix="correct these rows.")
    return [r.data for r in records], prompts


def generate_file(model, tokenizer, input_path: str, output_path: str, max_new_tokens: int = 256,
                  batch_size: int = 8, **generate_kwargs) -> int:
    """Answer every row of `input_path`, with a progress bar; write each row plus `generation` and `stopped` to
    `output_path` (JSONL, input order). Returns the number of rows."""
    from instructkit.evaluation import generate

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


class Streamer(TextStreamer):
    """transformers' TextStreamer (prompt and special tokens skipped), writing to `out` instead of print."""

    def __init__(self, tokenizer, out):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.out = out

    def on_finalized_text(self, text: str, stream_end: bool = False):
        self.out.write(text + ("\n" if stream_end else ""))
        self.out.flush()


def chat(model, tokenizer, system: str | None = None, max_new_tokens: int = 256, stdin=None, stdout=None,
         **generate_kwargs) -> None:
    """Read user turns line by line and stream each answer token by token; the conversation is kept until /reset;
    /exit or end of input quits. Prompts ("you>") are shown only on a terminal, so piped input gives the answers,
    one per line."""
    from instructkit.evaluation import generate

    if not tokenizer.chat_template:
        raise InstructkitError("the model's tokenizer has no chat template, so there is no chat format to use.",
                               fix="chat with a run's output folder (recipes save the template with the tokenizer), "
                                   "or use instructkit generate with 'prompt' strings (sent as raw text).")
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    interactive = stdin.isatty()
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line or line.strip() in ("/exit", "/quit"):
            return
        if line.strip() == "/reset":
            history = list(start)
            print("(conversation cleared)", file=sys.stderr, flush=True)
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.rstrip("\n")})
        if interactive:
            stdout.write("model> ")
        answer = generate(model, tokenizer, [history], max_new_tokens, batch_size=1,
                          streamer=Streamer(tokenizer, stdout), **generate_kwargs)[0]
        if not answer["stopped"]:
            print(f"(no end of turn within max_new_tokens={max_new_tokens})", file=sys.stderr, flush=True)
        history.append({"role": "assistant", "content": answer["text"]})
