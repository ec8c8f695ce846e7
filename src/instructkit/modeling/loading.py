"""Loading models and tokenizers: the right dtype for the machine, a chat template and a distinct pad token, adapters
merged in full precision, 4-bit bases kept trainable on CPU."""

from __future__ import annotations

from pathlib import Path

from instructkit.chat_templates import bundled_names, describe, set_chat_template, stop_token_ids
from instructkit.distributed import sharding
from instructkit.errors import InstructkitError
from instructkit.log import log
from instructkit.modeling.adapters import merge_adapter, start_from_adapter
from instructkit.modeling.files import (
    check_remote_code,
    check_safe_weights,
    from_pretrained,
    is_adapter_dir,
    resolve_model_path,
    torch_dtype,
)
from instructkit.modeling.quantization import (
    check_cpu_4bit_shapes,
    keep_4bit_weights_trainable,
    release_freed_memory,
    return_large_frees,
)


def load_tokenizer(config):
    """The tokenizer of a recipe config, with a chat template and a pad token distinct from eos (so the model learns
    to stop).

    Returns (tokenizer, ids of the template's control tokens it had to add): those need trained embedding rows
    (`load_model` resizes; `lora_config(..., new_tokens=...)` makes them trainable under LoRA).
    """
    from transformers import AutoTokenizer

    args, model_args, training_args = config.script, config.model, config.training
    key = "tokenizer_name_or_path" if args.tokenizer_name_or_path else "model_name_or_path"
    name = resolve_model_path(args.tokenizer_name_or_path or model_args.model_name_or_path, key)
    check_remote_code(name, key, training_args.trust_remote_code)
    tok = from_pretrained(AutoTokenizer.from_pretrained, name, "tokenizer", revision=model_args.model_revision,
                           trust_remote_code=training_args.trust_remote_code)
    new_tokens = set_chat_template(tok, args.chat_template) if args.chat_template else []
    if new_tokens:
        log(f"chat template {describe(args.chat_template)}: added tokens {tok.convert_ids_to_tokens(new_tokens)} (their "
            "embeddings are trained)")
    if not tok.chat_template and args.dataset_format != "text":
        raise InstructkitError(f"the tokenizer of {name} has no chat template, and instruction data is trained "
                               "through one.",
                               fix=f"set chat_template: to a bundled template ({', '.join(bundled_names())}) or a "
                                   ".jinja path, or use text data (dataset_format: text).")
    if tok.pad_token is None or tok.pad_token_id in stop_token_ids(tok):
        # A pad equal to eos / end of turn gets masked out of the loss, and the model never learns to stop.
        tok.add_special_tokens({"pad_token": "<|pad|>"})
    return tok, new_tokens


def load_model(config, tokenizer, quantization_config=None):
    """The causal LM of a recipe config in its resolved dtype (fp32 on CPU, bf16 where supported), optionally
    quantized.

    `model_name_or_path` may be an adapter folder (an SFT LoRA/QLoRA output): its base and adapter are merged in
    full precision first; with `quantization_config` or new adapters on top, via `<output_dir>/merged_base`.
    """
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM

    model_args, training_args = config.model, config.training
    name = resolve_model_path(model_args.model_name_or_path)
    if is_adapter_dir(name):
        merged_dir = start_from_adapter(name, config,
                                        keep_merged=quantization_config is not None or bool(model_args.use_peft))
        if merged_dir is None:
            model = merge_adapter(name, model_args.dtype, training_args.trust_remote_code)
            return fit_to_tokenizer(model, tokenizer)
        name = merged_dir
    check_safe_weights(name, "model_name_or_path")
    check_remote_code(name, "model_name_or_path", training_args.trust_remote_code)
    kwargs = dict(revision=model_args.model_revision, dtype=torch_dtype(model_args.dtype), use_safetensors=True,
                  trust_remote_code=training_args.trust_remote_code,
                  attn_implementation=model_args.attn_implementation)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if torch.cuda.is_available() and sharding() is None:
            # quantized weights are placed at load time, one GPU per process; ZeRO-3 / FSDP place shards themselves
            kwargs["device_map"] = {"": PartialState().local_process_index}
        elif not torch.cuda.is_available():  # before loading: load-time and each step's dequantized weights
            return_large_frees(name)          # would pile up in glibc's heap
    model = from_pretrained(AutoModelForCausalLM.from_pretrained, name, "model", **kwargs)
    if quantization_config is not None:
        release_freed_memory()  # the load-time buffers of quantization, kept by glibc otherwise
        if not torch.cuda.is_available():
            check_cpu_4bit_shapes(model, name)
            keep_4bit_weights_trainable(model)
    return fit_to_tokenizer(model, tokenizer)


def fit_to_tokenizer(model, tokenizer):
    """Room for tokens the tokenizer added; generation stops at end of turn and pads with the real pad token."""
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    # Generation stops at the template's end-of-turn token (and eos) and pads with the real pad token.
    stop = stop_token_ids(tokenizer)
    model.generation_config.eos_token_id = stop[0] if len(stop) == 1 else stop
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_for_inference(name: str, dtype: str | None = None, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer) of a saved run, to answer prompts with: a model folder, an adapter folder
    (merged into its full-precision base in memory), a hub name or 'embedded'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name, "MODEL")
    if is_adapter_dir(path):
        model = merge_adapter(path, dtype, trust_remote_code)
        tokenizer_from = path if (Path(path) / "tokenizer_config.json").is_file() else model.name_or_path
    else:
        model = from_pretrained(AutoModelForCausalLM.from_pretrained, path, "model", dtype=torch_dtype(dtype),
                                 use_safetensors=True, trust_remote_code=trust_remote_code)
        tokenizer_from = path
    tokenizer = from_pretrained(AutoTokenizer.from_pretrained, tokenizer_from, "tokenizer",
                                 trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # batches are left-padded; the pad is masked out, so eos serves
        tokenizer.pad_token = tokenizer.eos_token
    model = fit_to_tokenizer(model, tokenizer).requires_grad_(False)
    return (model.to("cuda") if torch.cuda.is_available() else model).eval(), tokenizer
