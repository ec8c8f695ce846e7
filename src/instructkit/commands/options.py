"""Options and model loading shared by the commands that answer prompts (chat, generate, serve)."""

from __future__ import annotations

import sys

from instructkit.modeling.loading import load_for_inference


def add_model_options(parser, model: bool = True) -> None:
    """Options shared by the commands that load a model."""
    if model:
        parser.add_argument("model", help="a run's output folder (model or adapter), a hub name, or 'embedded'")
        parser.add_argument("--max_new_tokens", type=int, default=256, help="longest answer in tokens (default 256)")
        parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default), > 0 samples")
        parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling when --temperature > 0")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="weights dtype (default: float32 on CPU, bfloat16 on GPUs that support it); never 4-bit")
    parser.add_argument("--trust_remote_code", action="store_true", help="run model code from the model folder "
                                                                          "(off by default)")


def load_model_for(args):
    """(model in eval mode, tokenizer) for `args.model` (an adapter is merged into its base in memory)."""

    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    return load_for_inference(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
