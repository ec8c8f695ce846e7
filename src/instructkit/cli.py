"""`instructkit` command line: find and copy recipes, use what they trained, build or inspect the embedded default.

    instructkit list                 # recipes x configs x launch configs, with the command for each
    instructkit cp RECIPE DEST       # copy a recipe, its config and launch configs into DEST, to own and edit
    instructkit merge ADAPTER OUT    # LoRA/QLoRA adapter + full-precision base -> one model; logits checked
    instructkit chat MODEL           # interactive chat through the chat template, streamed (/reset, /exit)
    instructkit generate MODEL --input prompts.jsonl --output answers.jsonl
                                     # batched answers (left padding, progress bar); rows: prompt / messages / instruction
    instructkit serve MODEL [--port 8000]
                                     # local HTTP endpoint: POST /generate, POST /v1/chat/completions (127.0.0.1)
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
import json
import sys
from pathlib import Path

from instructkit.errors import user_errors


def cmd_list(_args) -> None:
    from instructkit.copying import launch_configs_dir, recipes_dir

    recipes = recipes_dir()
    rel = lambda p: p.relative_to(recipes.parent)  # noqa: E731
    for script in sorted(recipes.glob("*.py")):
        configs = sorted((recipes / "configs").glob(f"{script.stem}*.yaml"))
        for config in configs:
            print(f"{script.stem:<10} {rel(config)!s:<34} accelerate launch {rel(script)} --config {rel(config)}")
        if not configs:
            print(f"{script.stem:<10} {'(arguments only)':<34} python {rel(script)} --help")
    launch = sorted(p for p in launch_configs_dir().glob("*") if p.suffix in (".yaml", ".sh"))
    if launch:
        print("\nlaunch configs (any recipe; add --num_processes N for several GPUs):")
        for cfg in launch:
            run = f"sbatch {rel(cfg)} recipes/<recipe>.py" if cfg.suffix == ".sh" else \
                f"accelerate launch --config_file {rel(cfg)} recipes/<recipe>.py"
            print(f"  {rel(cfg)!s:<48} {run}")
    print("\nown a copy: instructkit cp <recipe> <folder>   (then: cd <folder> && accelerate launch <recipe>.py)")


def cmd_cp(args) -> None:
    from instructkit.copying import copy_recipe, missing_inputs

    dest = Path(args.dest).expanduser()
    copies = copy_recipe(args.recipe, dest, args.launch_configs, args.force)
    for path in copies:
        print(f"copied {path}")
    config = dest / "configs" / f"{args.recipe}.yaml"
    for item in missing_inputs(config, dest) if config.is_file() else []:
        print(f"note: {config} reads {item}, which does not exist in {dest} yet (relative paths are read from where "
              "you launch; run the recipe that writes it there first, or edit the config)")
    print(f"\nrun it:  cd {args.dest} && accelerate launch {args.recipe}.py"
          + (f"    # settings: configs/{args.recipe}.yaml, or --key value" if config.is_file() else ""))


def cmd_merge(args) -> None:
    from instructkit.merging import merge

    record = merge(args.adapter, args.out, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    check = record["check"]
    print(f"merged {args.adapter} into its base {record['base']} ({record['dtype']}) -> {args.out}")
    print(f"check: max |logit difference| merged vs adapter = {check['max_abs_logit_diff']:.3g} over "
          f"{check['tokens']} tokens of {check['conversations']} conversations (logits up to "
          f"{check['max_abs_logit']:.3g}; allowed {check['tolerance']:.3g})")
    print(f"load it with AutoModelForCausalLM.from_pretrained({str(args.out)!r}), or: instructkit chat {args.out}")


def _load(args):
    from instructkit.modeling import load_for_inference

    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    return load_for_inference(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)


def cmd_chat(args) -> None:
    from instructkit.inference import chat, sampling

    kwargs = sampling(args.temperature, args.top_p)
    model, tokenizer = _load(args)
    print(f"chat with {args.model}: one message per line; /reset clears the conversation, /exit or Ctrl-D quits",
          file=sys.stderr, flush=True)
    chat(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens, **kwargs)


def cmd_generate(args) -> None:
    from instructkit.inference import generate_file, read_prompts, sampling

    kwargs = sampling(args.temperature, args.top_p)
    read_prompts(args.input)  # a bad input file fails before the model loads
    model, tokenizer = _load(args)
    n = generate_file(model, tokenizer, args.input, args.output, args.max_new_tokens, args.batch_size, **kwargs)
    print(f"wrote {n} answers to {args.output}")


def cmd_serve(args) -> None:
    from instructkit.serving import serve

    model, tokenizer = _load(args)
    serve(model, tokenizer, args.model, host=args.host, port=args.port, max_new_tokens=args.max_new_tokens)


def cmd_embedded(args) -> None:
    from instructkit.embedded import ensure_embedded

    assets = ensure_embedded()
    info = {"model_dir": str(assets.model_dir), "data_dir": str(assets.data_dir), **assets.info}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"model:   {info['model_dir']}  ({info['parameters']:,} parameters, pretraining loss {info['pretrain_loss']})")
    print(f"data:    {info['data_dir']}  (train / test: unseen arguments / test_phrasings: unseen phrasings)")
    print(f"built in {info['build_seconds']} s; weights sha256 {info['weights_sha256'][:16]}")


def cmd_inspect(args) -> None:
    from instructkit.inspection import inspect_config

    inspect_config((["--config", args.config] if args.config else []) + args.overrides, n=args.n)


def cmd_eval(args) -> None:
    """recipes/evaluate.py's main, with the arguments after `eval`."""
    import importlib.util

    from instructkit.copying import recipes_dir

    spec = importlib.util.spec_from_file_location("instructkit_recipe_evaluate", recipes_dir() / "evaluate.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main(args.overrides)


def cmd_estimate(args) -> None:
    from instructkit.estimate import main as estimate

    estimate(args)


def cmd_decontaminate(args) -> None:
    from pathlib import Path

    from instructkit.benchmarks import Protocol
    from instructkit.decontamination import decontaminate, summary_lines

    result = decontaminate(args.train, Protocol(tasks=args.tasks, data_dir=args.data_dir),
                           Path(args.output_dir) / "lm_eval_tasks", args.ngram)
    print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result, args.max_rows)))


def _model_options(parser, model: bool = True) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instructkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="recipes x configs x launch configs").set_defaults(func=cmd_list)
    cp = sub.add_parser("cp", help="copy a recipe, its default config and launch configs into a folder to own")
    cp.add_argument("recipe", help="recipe name (instructkit list shows them), e.g. sft_qlora")
    cp.add_argument("dest", help="folder to copy into (created if needed)")
    cp.add_argument("--launch_configs", nargs="+", default=[], metavar="NAME",
                    help="more launch configs to copy besides single_gpu (e.g. ddp fsdp_qlora), or 'all'")
    cp.add_argument("--force", action="store_true", help="overwrite files that already exist in the folder")
    cp.set_defaults(func=cmd_cp)
    mrg = sub.add_parser("merge", help="merge a LoRA/QLoRA adapter into its full-precision base and save one model")
    mrg.add_argument("adapter", help="adapter folder (the output_dir of sft_lora / sft_qlora / LoRA DPO)")
    mrg.add_argument("out", help="folder for the merged model")
    _model_options(mrg, model=False)
    mrg.set_defaults(func=cmd_merge)
    cht = sub.add_parser("chat", help="chat with a model through its chat template, tokens streamed")
    _model_options(cht)
    cht.add_argument("--system", help="system message at the start of the conversation")
    cht.set_defaults(func=cmd_chat)
    gen = sub.add_parser("generate", help="answer every row of a JSONL file (batched, left padding)")
    _model_options(gen)
    gen.add_argument("--input", required=True, help="JSONL/JSON/CSV/Parquet rows with 'prompt' (string or messages), "
                                                    "'messages' (ending with a user turn) or 'instruction' (+ 'input')")
    gen.add_argument("--output", required=True, help="JSONL: each input row plus 'generation' and 'stopped'")
    gen.add_argument("--batch_size", type=int, default=8, help="prompts per generate call (default 8)")
    gen.set_defaults(func=cmd_generate)
    srv = sub.add_parser("serve", help="local HTTP endpoint for smoke tests: /generate, /v1/chat/completions")
    _model_options(srv)
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    srv.set_defaults(func=cmd_serve)
    emb = sub.add_parser("embedded", help="build (if needed) and describe the embedded default")
    emb.add_argument("--json", action="store_true", help="print the build record as JSON")
    emb.set_defaults(func=cmd_embedded)
    ins = sub.add_parser("inspect", help="show what a recipe config trains on: tokenized rows with the trained "
                                         "tokens marked, per-split statistics, preflight checks",
                         description="Any other --key value is a recipe override, as on a recipe's command line.",
                         allow_abbrev=False)
    ins.add_argument("--config", help="recipe YAML config (default: the embedded default's settings)")
    ins.add_argument("-n", type=int, default=3, help="number of training rows to print (default 3)")
    ins.set_defaults(func=cmd_inspect)
    sub.add_parser("eval", add_help=False, help="benchmarks through lm-evaluation-harness (recipes/evaluate.py; "
                                                 "its --help lists the keys)").set_defaults(func=cmd_eval)
    dec = sub.add_parser("decontaminate", help="n-gram overlap between training data and benchmark questions")
    dec.add_argument("--train", nargs="+", default=["embedded"], help="training data files/folders, or 'embedded'")
    dec.add_argument("--tasks", nargs="+", default=["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"],  # DEFAULT_TASKS
                     help="lm-eval task, group or tag names")
    dec.add_argument("--data_dir", default=None, help="local benchmark data (hub layout) or 'fixture'")
    dec.add_argument("--ngram", type=int, default=8, help="word n-gram size (shorter questions match whole)")
    dec.add_argument("--max_rows", type=int, default=5, help="flagged rows printed per task")
    dec.add_argument("--output_dir", default="outputs/decontaminate", help="where the lm-eval task YAMLs are written")
    dec.add_argument("--json", action="store_true", help="print the full report as JSON")
    dec.set_defaults(func=cmd_decontaminate)
    est = sub.add_parser("estimate", help="memory per device for full / LoRA / QLoRA under DDP / ZeRO-2 / ZeRO-3 / "
                                          "offload, before anything launches, and whether it fits")
    est.add_argument("--config", required=True, help="recipe YAML config (model_name_or_path, batch, max_length, ...)")
    est.add_argument("--launch", help="accelerate config file (strategy and process count)")
    est.add_argument("--gpus", type=int, help="number of GPUs (default: the launch config's num_processes, else 1)")
    est.add_argument("--gpu-memory", dest="gpu_memory", help="memory per GPU, e.g. 24GB or 80GB")
    est.add_argument("--mode", choices=["full", "lora", "qlora"],
                     help="what trains (default: from the config: load_in_4bit -> qlora, lora_* keys -> lora)")
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    est.set_defaults(func=cmd_estimate)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, args.overrides = parser.parse_known_args(argv)  # recipe overrides, checked by the recipe parser
    if args.overrides and args.command not in ("inspect", "eval"):
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
    with user_errors():
        args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
