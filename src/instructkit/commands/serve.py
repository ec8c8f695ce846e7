"""`instructkit serve MODEL`: an OpenAI-compatible HTTP server for a tuned model (instructkit.serving)."""

from __future__ import annotations

import os

from instructkit.commands.options import add_model_options, load_model_for
from instructkit.errors import InstructkitError
from instructkit.evaluation.generation import sampling
from instructkit.serving import check_installed

API_KEY_ENV = "INSTRUCTKIT_API_KEY"


def register(sub) -> None:
    parser = sub.add_parser("serve", help="OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, "
                                          "streaming, concurrent clients batched")
    add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--api-key", "--api_key", dest="api_key", default=None,
                        help=f"require 'Authorization: Bearer KEY' on /v1/* (default: ${API_KEY_ENV} if set, else "
                             "no key)")
    parser.add_argument("--max_batch_size", type=int, default=16, help="requests answered together in one batch "
                                                                       "(default 16)")
    parser.add_argument("--max_waiting", type=int, default=64, help="requests that may wait for the model; more get "
                                                                    "503 + Retry-After (default 64)")
    parser.add_argument("--max_prompt_tokens", type=int, default=None, help="longest prompt in tokens (default: the "
                                                                            "model's context, else 4096)")
    parser.add_argument("--max_body_bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    parser.set_defaults(func=run)


def run(args) -> None:
    check_installed()
    settings_args = check_limits(args)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    model, tokenizer = load_model_for(args)
    from instructkit.serving.app import Settings
    from instructkit.serving.server import serve

    context = getattr(model.config, "max_position_embeddings", None)
    settings = Settings(name=args.model, max_new_tokens=args.max_new_tokens, context=context,
                        max_prompt_tokens=args.max_prompt_tokens or context or 4096, api_key=api_key, **settings_args)
    serve(model, tokenizer, settings, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
          max_waiting=args.max_waiting)


def check_limits(args) -> dict:
    """Every bad limit at once, before the model loads; returns the Settings keywords they set."""
    positive = {"--max_new_tokens": args.max_new_tokens, "--max_batch_size": args.max_batch_size,
                "--max_waiting": args.max_waiting, "--max_body_bytes": args.max_body_bytes,
                "--max_prompt_tokens": args.max_prompt_tokens}
    bad = [f"{flag} {value}" for flag, value in positive.items() if value is not None and value < 1]
    if bad:
        raise InstructkitError(f"instructkit serve: {', '.join(bad)}: limits must be at least 1.",
                               fix="give each limit a positive number (or leave it out for its default).")
    sampling(args.temperature, args.top_p)  # out of range: stops here with the fix
    return {"temperature": args.temperature, "top_p": args.top_p, "max_body_bytes": args.max_body_bytes}
