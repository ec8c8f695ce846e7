"""`instructkit merge ADAPTER OUT`: a LoRA/QLoRA adapter + its full-precision base -> one model, logits checked."""

from __future__ import annotations

from pathlib import Path

from instructkit.commands.options import add_model_options
from instructkit.modeling.merging import merge, vllm_command
from instructkit.training.model_card import write_model_card
from instructkit.training.outputs import METRICS_FILE


def register(sub) -> None:
    parser = sub.add_parser("merge", help="merge a LoRA/QLoRA adapter into its full-precision base and save one model")
    parser.add_argument("adapter", help="adapter folder (the output_dir of sft_lora / sft_qlora / LoRA DPO)")
    parser.add_argument("out", help="folder for the merged model")
    add_model_options(parser, model=False)
    parser.set_defaults(func=run)


def run(args) -> None:

    record = merge(args.adapter, args.out, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    if (Path(args.out) / METRICS_FILE).is_file():  # the run's records came along: the card describes the merge
        write_model_card(Path(args.out))
    check = record["check"]
    print(f"merged {args.adapter} into its base {record['base']} ({record['dtype']}) -> {args.out}")
    print(f"check: max |logit difference| merged vs adapter = {check['max_abs_logit_diff']:.3g} over "
          f"{check['tokens']} tokens of {check['conversations']} conversations (logits up to "
          f"{check['max_abs_logit']:.3g}; allowed {check['tolerance']:.3g})")
    print(f"load it with AutoModelForCausalLM.from_pretrained({str(args.out)!r}), or: instructkit chat {args.out}")
    print(f"serve it here: instructkit serve {args.out}")
    print(f"serve it on GPUs with vLLM (same chat template, stops at the end of turn): "
          f"{vllm_command(args.out, record['dtype'])}")
