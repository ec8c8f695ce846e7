"""`instructkit serve MODEL`: a local HTTP endpoint for a tuned model (instructkit.serving)."""

from __future__ import annotations

from instructkit.commands.options import add_model_options, load_model_for
from instructkit.serving import serve


def register(sub) -> None:
    parser = sub.add_parser("serve", help="local HTTP endpoint for smoke tests: /generate, /v1/chat/completions")
    add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.set_defaults(func=run)


def run(args) -> None:

    model, tokenizer = load_model_for(args)
    serve(model, tokenizer, args.model, host=args.host, port=args.port, max_new_tokens=args.max_new_tokens)
