"""`instructkit chat MODEL`: chat through the model's chat template, tokens streamed (/reset, /exit).

Loading is `modeling.loading.load_for_inference` (an adapter is merged into its full-precision base in memory) and
generation is `evaluation.generation.generate`, the code the held-out exact match uses: prompts through the model's
chat template, answers cut at the template's end-of-turn token.
"""

from __future__ import annotations

import sys

from instructkit.commands.options import add_model_options, load_model_for
from instructkit.errors import InstructkitError
from instructkit.evaluation.generation import generate, sampling


def register(sub) -> None:
    parser = sub.add_parser("chat", help="chat with a model through its chat template, tokens streamed")
    add_model_options(parser)
    parser.add_argument("--system", help="system message at the start of the conversation")
    parser.set_defaults(func=run)


def run(args) -> None:
    kwargs = sampling(args.temperature, args.top_p)
    model, tokenizer = load_model_for(args)
    print(f"chat with {args.model}: one message per line; /reset clears the conversation, /exit or Ctrl-D quits",
          file=sys.stderr, flush=True)
    chat(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens, **kwargs)


def streamer(tokenizer, out):
    """transformers' TextStreamer (prompt and special tokens skipped), writing to `out` instead of print."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def chat(model, tokenizer, system: str | None = None, max_new_tokens: int = 256, stdin=None, stdout=None,
         **generate_kwargs) -> None:
    """Read user turns line by line and stream each answer token by token; the conversation is kept until /reset;
    /exit or end of input quits. Prompts ("you>") are shown only on a terminal, so piped input gives the answers,
    one per line."""
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
                          streamer=streamer(tokenizer, stdout), **generate_kwargs)[0]
        if not answer["stopped"]:
            print(f"(no end of turn within max_new_tokens={max_new_tokens})", file=sys.stderr, flush=True)
        history.append({"role": "assistant", "content": answer["text"]})
