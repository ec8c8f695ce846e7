"""LoRA adapters: their config, tokens the chat template added, dtype under 4-bit, and merging an adapter into its
full-precision base (never into 4-bit weights)."""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.errors import InstructkitError
from instructkit.log import log
from instructkit.modeling.files import (
    check_local_path,
    check_remote_code,
    check_safe_weights,
    from_pretrained,
    torch_dtype,
)


def merge_adapter(adapter_dir: str, dtype: str | None = None, trust_remote_code: bool = False, unmerged: bool = False):
    """Base model + the adapter in `adapter_dir`, merged in full precision (never into 4-bit weights)."""
    from peft import AutoPeftModelForCausalLM

    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise InstructkitError(f"{adapter_dir}/adapter_config.json names no base model (base_model_name_or_path).",
                               fix="set base_model_name_or_path in that file to the base model's folder or hub name.")
    check_local_path(base, f"base_model_name_or_path in {adapter_dir}/adapter_config.json")
    check_safe_weights(adapter_dir, "model_name_or_path")
    check_safe_weights(base, f"base_model_name_or_path in {adapter_dir}/adapter_config.json")
    check_remote_code(base, f"base_model_name_or_path in {adapter_dir}/adapter_config.json", trust_remote_code)
    model = from_pretrained(AutoPeftModelForCausalLM.from_pretrained, adapter_dir, "adapter and its base model",
                            dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code)
    if unmerged:  # the PeftModel before the merge, to compare the merge with (instructkit.merging)
        return model
    merged = model.merge_and_unload()
    return merged.requires_grad_(True)  # PEFT loaded the base frozen; a full run trains every weight


def start_from_adapter(adapter_dir: str, config, keep_merged: bool) -> str | None:
    """Prepare a run that starts from an SFT adapter: returns the folder to load the merged model from.

    When new adapters train on top (`keep_merged`), the merged model is saved to `<output_dir>/merged_base`
    (main process first) so the new adapter's `base_model_name_or_path` names the model it was trained on;
    otherwise None (the merge happens in memory in `load_model`).
    """
    from accelerate import PartialState

    if not keep_merged:
        return None
    merged = Path(config.training.output_dir) / "merged_base"
    with PartialState().main_process_first():
        if PartialState().is_main_process:
            from transformers import AutoTokenizer

            merge_adapter(adapter_dir, config.model.dtype, config.training.trust_remote_code).save_pretrained(
                merged, safe_serialization=True)
            AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(merged)
    return str(merged)


def lora_config(model_args, model=None, new_tokens=()):
    """LoRA from the resolved `lora_*` keys of a recipe's ModelConfig (all linear layers unless
    `lora_target_modules` names others: `config.resolved.resolve_model`).

    `new_tokens` (ids the chat template added, see `load_tokenizer`) must be learned too: `train_new_tokens`.
    """
    from trl import get_peft_config

    peft_config = get_peft_config(model_args)
    if new_tokens:
        train_new_tokens(peft_config, model, list(new_tokens))
    return peft_config


def train_new_tokens(peft_config, model, token_ids: list[int]) -> None:
    """Under LoRA, train the embedding rows of tokens the chat template added; frozen, they stay random.

    Input embeddings: only the new rows (`trainable_token_indices`). Output: the whole LM head (`modules_to_save`),
    as TRL does for `clone_chat_template`. Not `trainable_token_indices` on the LM head, nor on tied embeddings
    (where PEFT wraps the LM head the same way): TRL's fused LM head reads `lm_head.weight` *and* `lm_head.bias`,
    and PEFT's TrainableTokensWrapper has no `bias` (AttributeError at the first step; trl 1.16, peft 0.21). Tied
    embeddings therefore train both modules whole (`modules_to_save`), kept as one tensor (`ensure_weight_tying`).
    """
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = {module: name.rsplit(".", 1)[-1] for name, module in model.named_modules() if module in (embeddings, head)}
    modules = list(peft_config.modules_to_save or [])
    if head is not None and head.weight is embeddings.weight:
        modules += [names[embeddings], names[head]]
        peft_config.ensure_weight_tying = True
    else:
        indices = dict(peft_config.trainable_token_indices or {})
        indices[names[embeddings]] = sorted(set(indices.get(names[embeddings], [])) | set(token_ids))
        peft_config.trainable_token_indices = indices
        if head is not None:
            modules.append(names[head])
    peft_config.modules_to_save = list(dict.fromkeys(modules))
    log(f"LoRA: {len(token_ids)} tokens added by the chat template are trained (trainable_token_indices="
        f"{peft_config.trainable_token_indices}, modules_to_save={peft_config.modules_to_save})")


def adapters_to_compute_dtype(model, quantization_config) -> None:
    """Keep trainable adapter weights in the 4-bit compute dtype.

    TRL casts QLoRA adapters to bf16 (the QLoRA paper's choice for GPUs). On a CPU without native bf16 that
    makes every step several times slower, so with an fp32 compute dtype the adapters stay fp32. A no-op
    when the compute dtype is bf16. Call after the trainer is built, before training.
    """
    if quantization_config is None:  # not quantized: the adapters keep the model's dtype
        return
    dtype = quantization_config.bnb_4bit_compute_dtype
    for name, param in model.named_parameters():
        # TRL keeps DoRA's magnitude vector in fp32 on purpose (bf16 can freeze its small updates)
        if param.requires_grad and param.dtype != dtype and "lora_magnitude_vector" not in name:
            param.data = param.data.to(dtype)
