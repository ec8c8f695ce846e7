"""`instructkit estimate --config x.yaml`: memory per device for full / LoRA / QLoRA under DDP / ZeRO-2 / ZeRO-3 /
offload, before anything launches, and whether it fits (instructkit.modeling.memory)."""

from __future__ import annotations

import json

from instructkit.errors import InstructkitError
from instructkit.modeling.memory import estimate, format_report, shipped_table


def register(sub) -> None:
    parser = sub.add_parser("estimate", help="memory per device for full / LoRA / QLoRA under DDP / ZeRO-2 / ZeRO-3 / "
                                             "offload, before anything launches, and whether it fits")
    parser.add_argument("--config", help="recipe YAML config (model_name_or_path, batch, max_length, ...); a "
                                         "per-model config is checked against the hardware it is meant for")
    parser.add_argument("--shipped", action="store_true",
                        help="a table of every shipped per-model config against the hardware it is meant for")
    parser.add_argument("--launch", help="accelerate config file (strategy and process count)")
    parser.add_argument("--gpus", type=int, help="number of GPUs (default: the launch config's num_processes, else 1)")
    parser.add_argument("--gpu-memory", dest="gpu_memory", help="memory per GPU, e.g. 24GB or 80GB")
    parser.add_argument("--mode", choices=["full", "lora", "qlora"],
                        help="what trains (default: from the config: load_in_4bit -> qlora, lora_* keys -> lora)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(func=run)


def run(args) -> None:
    if args.shipped:
        print(shipped_table())
        return
    if not args.config:
        raise InstructkitError("instructkit estimate needs --config (or --shipped).",
                               fix="pass --config path/to/recipe.yaml, or --shipped for the per-model configs.")
    report = estimate(args.config, args.launch, args.gpus, args.gpu_memory, args.mode)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
