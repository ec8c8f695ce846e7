"""`instructkit merge`: a LoRA/QLoRA adapter merged into its base in full precision, checked, saved as one model.

The base is loaded by `adapters.merge_adapter` (the loading every recipe uses) in full precision: fp32 on CPU, bf16
on GPUs that support it, or `--dtype`; never in 4-bit, also for QLoRA adapters, since merging into quantized weights
rounds the adapter away. Before saving, the merged model's logits are compared with the unmerged adapter's on a few
conversations; a difference beyond rounding stops the merge. The folder gets the tokenizer + chat template, a
generation config that stops at the end of turn, the run's records (config, metrics, curves, samples), and `merge.json`
(`instructkit merge` then writes the model card)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from instructkit.errors import InstructkitError
from instructkit.modeling.adapters import merge_adapter
from instructkit.modeling.files import is_adapter_dir
from instructkit.modeling.loading import fit_to_tokenizer
from instructkit.paths import write_atomic

# A few conversations for the logit check (any tokenizer can encode them)
CHECK_CONVERSATIONS = [
    [{"role": "user", "content": "Reverse cat."}, {"role": "assistant", "content": "tac"}],
    [{"role": "user", "content": "Add 3 and 4."}, {"role": "assistant", "content": "7"}],
    [{"role": "user", "content": "Name a colour, then say why it is one."},
     {"role": "assistant", "content": "Blue is a colour: it is how we see light of about 450 nm."}],
]
RUN_RECORDS = ("config.yaml", "metrics.json", "samples.jsonl", "training_curves.png")
MERGE_RECORD = "merge.json"


def check_inputs(tokenizer) -> list:
    """Token ids of the check conversations, through the chat template when there is one."""
    if tokenizer.chat_template:
        return [tokenizer.apply_chat_template(c, return_tensors="pt", return_dict=True)["input_ids"]
                for c in CHECK_CONVERSATIONS]
    return [tokenizer(" ".join(m["content"] for m in c), return_tensors="pt")["input_ids"] for c in CHECK_CONVERSATIONS]


def logits_of(model, inputs: list) -> list:
    import torch

    with torch.no_grad():
        return [model(input_ids=ids.to(model.device)).logits.float().cpu() for ids in inputs]


def tolerance(dtype, scale: float) -> float:
    """Rounding allowed between merged and unmerged logits: relative to the logits' size, looser in 16-bit."""
    import torch

    return (1e-4 if dtype == torch.float32 else 2e-2) * max(1.0, scale)


def merge(adapter_dir: str, out_dir: str, dtype: str | None = None, trust_remote_code: bool = False) -> dict:
    """Merge, check, save. Returns the record written to `<out_dir>/merge.json`."""
    from transformers import AutoTokenizer

    adapter, out = Path(adapter_dir).expanduser(), Path(out_dir).expanduser()
    if not is_adapter_dir(str(adapter)):
        what = "does not exist" if not adapter.exists() else "holds no adapter_config.json"
        raise InstructkitError(f"{adapter_dir} is not a LoRA adapter folder: it {what}.",
                               fix="pass the output_dir of a LoRA/QLoRA run (e.g. outputs/sft_lora); a full model "
                                   "folder needs no merge.")
    if out.resolve() == adapter.resolve():
        raise InstructkitError(f"merge would write into the adapter folder {adapter} itself.",
                               fix="pass another output folder, e.g. " + f"{adapter}-merged.")
    peft_model = merge_adapter(str(adapter), dtype, trust_remote_code, unmerged=True).eval()
    base = peft_model.peft_config["default"].base_model_name_or_path
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else base, trust_remote_code=trust_remote_code)

    inputs = check_inputs(tokenizer)
    with_adapter = logits_of(peft_model, inputs)
    merged = peft_model.merge_and_unload(safe_merge=True).requires_grad_(False)  # safe_merge: NaNs are an error
    merged_logits = logits_of(merged, inputs)
    max_diff = max(float((a - b).abs().max()) for a, b in zip(with_adapter, merged_logits))
    scale = max(float(a.abs().max()) for a in with_adapter)
    allowed = tolerance(merged.dtype, scale)
    record = {"adapter": str(adapter.resolve()), "base": base, "dtype": str(merged.dtype).removeprefix("torch."),
              "check": {"conversations": len(inputs), "tokens": sum(ids.shape[1] for ids in inputs),
                        "max_abs_logit_diff": max_diff, "max_abs_logit": scale, "tolerance": allowed}}
    if not max_diff <= allowed:
        raise InstructkitError(f"the merged model's logits differ from the adapter's by up to {max_diff:.3g} (allowed "
                               f"{allowed:.3g} at logits up to {scale:.3g}); nothing was saved to {out}.",
                               fix="merge in float32 (--dtype float32); if it persists, the adapter does not match "
                                   f"its base {base}.")

    fit_to_tokenizer(merged, tokenizer)  # plain model.generate stops at the end of turn
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for name in RUN_RECORDS:
        if (adapter / name).is_file():
            shutil.copy2(adapter / name, out / name)
    write_atomic(out / MERGE_RECORD, json.dumps(record, indent=2) + "\n")
    return record


def vllm_command(out_dir: str, dtype: str) -> str:
    """The `vllm serve` command for a merged folder. vLLM renders prompts with the folder's chat template
    (`apply_chat_template(..., add_generation_prompt=True)`) and stops on the tokenizer's eos plus
    generation_config.json's `eos_token_id`, which `fit_to_tokenizer` set to the end-of-turn token; fp32 weights
    (merged on CPU) are served in bf16 on GPUs (vLLM's "auto" would pick fp16 for them)."""
    name = Path(out_dir).expanduser().resolve().name
    return (f"vllm serve {shlex.quote(str(out_dir))} --served-model-name {shlex.quote(name)} --generation-config auto"
            + (" --dtype bfloat16" if dtype == "float32" else ""))
