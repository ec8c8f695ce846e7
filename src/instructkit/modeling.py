"""Model and tokenizer loading: the right dtype for the machine, QLoRA/LoRA configs, clear path errors.

Safe by default: safetensors only, `trust_remote_code` only when the config enables it.
"""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.chat_templates import chat_template_text  # noqa: F401  (the embedded build imports it from here)
from instructkit.chat_templates import bundled_names, set_chat_template, stop_token_ids
from instructkit.errors import InstructkitError
from instructkit.launch import sharding
from instructkit.paths import looks_like_local_path


def check_local_path(name: str | None, key: str) -> None:
    """A name that looks like a local path must exist; checked before anything loads."""
    if name in (None, "", "embedded"):
        return
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InstructkitError(f"{key} {name} is a file, not a model folder.",
                                   fix=f"set {key} to the folder holding config.json and the weights.")
    elif looks_like_local_path(name):
        raise InstructkitError(f"{key} {name} does not exist (relative paths start at {Path.cwd()}).",
                               fix=f"set {key} to an existing folder, a hub name, or 'embedded'.")


PICKLED_WEIGHTS = ("pytorch_model*.bin", "adapter_model.bin", "*.pt", "*.pth", "*.ckpt")


def check_safe_weights(folder: str, key: str) -> None:
    """A local model or adapter folder must hold safetensors weights: pickled ones (pytorch_model.bin, ...) can run
    arbitrary code when loaded, so they are never loaded."""
    path = Path(folder)
    if not path.is_dir() or list(path.glob("*.safetensors")):
        return
    pickled = sorted({p.name for pattern in PICKLED_WEIGHTS for p in path.glob(pattern)})
    if pickled:
        raise InstructkitError(
            f"{key} {folder} holds only pickled weights ({', '.join(pickled[:3])}), which can run code when loaded; "
            "instructkit loads safetensors only.",
            fix="convert them once where you trust the file: AutoModelForCausalLM.from_pretrained(folder)"
                ".save_pretrained(folder) writes model.safetensors (for an adapter: PeftModel ... save_pretrained).")


def check_remote_code(folder: str, key: str, trust_remote_code: bool) -> None:
    """A local folder whose config maps to its own Python code (`auto_map`) loads only with trust_remote_code."""
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((Path(folder) / name).read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError, AttributeError):
            continue
        if auto_map:
            raise InstructkitError(
                f"{key} {folder} ships its own Python code ({name} maps {', '.join(sorted(auto_map))} to it), which "
                "is not run unless you allow it.",
                fix="read that code, then set trust_remote_code: true; or use a model transformers supports natively.")


def resolve_model_path(name: str | None, key: str = "model_name_or_path") -> str:
    """`embedded` → the cached embedded base; an existing local folder → itself; else a hub name."""
    if name in (None, "", "embedded"):
        from instructkit.embedded import ensure_embedded

        return str(ensure_embedded().model_dir)
    check_local_path(name, key)
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def _from_pretrained(loader, name: str, what: str, **kwargs):
    try:
        return loader(name, **kwargs)
    except (OSError, ValueError) as err:  # missing/unreachable files; unknown model_type or revision
        first = str(err).strip().splitlines()[0][:300]
        raise InstructkitError(f"could not load the {what} {name!r}: {first}",
                               fix="check the name or path (an SFT output folder exists only after its recipe ran, "
                                   "e.g. accelerate launch recipes/sft_full.py); without network access "
                                   "(HF_HUB_OFFLINE=1) only local folders and already cached hub models load.") from None


def load_tokenizer(model_args, args, training_args):
    """The tokenizer, with a chat template and a pad token distinct from eos (so the model learns to stop).

    Returns (tokenizer, ids of the template's control tokens it had to add): those need trained embedding rows
    (`load_model` resizes; `lora_config(..., new_tokens=...)` makes them trainable under LoRA).
    """
    from transformers import AutoTokenizer

    key = "tokenizer_name_or_path" if args.tokenizer_name_or_path else "model_name_or_path"
    name = resolve_model_path(args.tokenizer_name_or_path or model_args.model_name_or_path, key)
    check_remote_code(name, key, training_args.trust_remote_code)
    tok = _from_pretrained(AutoTokenizer.from_pretrained, name, "tokenizer", revision=model_args.model_revision,
                           trust_remote_code=training_args.trust_remote_code)
    new_tokens = set_chat_template(tok, args.chat_template) if args.chat_template else []
    if not tok.chat_template and args.dataset_format != "text":
        raise InstructkitError(f"the tokenizer of {name} has no chat template, and instruction data is trained "
                               "through one.",
                               fix=f"set chat_template: to a bundled template ({', '.join(bundled_names())}) or a "
                                   ".jinja path, or use text data (dataset_format: text).")
    if tok.pad_token is None or tok.pad_token_id in stop_token_ids(tok):
        # A pad equal to eos / end of turn gets masked out of the loss, and the model never learns to stop.
        tok.add_special_tokens({"pad_token": "<|pad|>"})
    return tok, new_tokens


def torch_dtype(name: str):
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def is_adapter_dir(name: str) -> bool:
    """A PEFT adapter folder (e.g. the output of sft_lora / sft_qlora), not a full model."""
    return (Path(name) / "adapter_config.json").is_file()


def merge_adapter(adapter_dir: str, model_args, training_args, unmerged: bool = False):
    """Base model + the adapter in `adapter_dir`, merged in full precision (never into 4-bit weights)."""
    from peft import AutoPeftModelForCausalLM

    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise InstructkitError(f"{adapter_dir}/adapter_config.json names no base model (base_model_name_or_path).",
                               fix="set base_model_name_or_path in that file to the base model's folder or hub name.")
    check_local_path(base, f"base_model_name_or_path in {adapter_dir}/adapter_config.json")
    check_safe_weights(adapter_dir, "model_name_or_path")
    check_safe_weights(base, f"base_model_name_or_path in {adapter_dir}/adapter_config.json")
    check_remote_code(base, f"base_model_name_or_path in {adapter_dir}/adapter_config.json",
                      training_args.trust_remote_code)
    model = _from_pretrained(AutoPeftModelForCausalLM.from_pretrained, adapter_dir, "adapter and its base model",
                             dtype=torch_dtype(model_args.dtype), use_safetensors=True,
                             trust_remote_code=training_args.trust_remote_code)
    if unmerged:  # the PeftModel before the merge, to compare the merge with (instructkit.merging)
        return model
    merged = model.merge_and_unload()
    return merged.requires_grad_(True)  # PEFT loaded the base frozen; a full run trains every weight


def start_from_adapter(adapter_dir: str, model_args, training_args, keep_merged: bool) -> str | None:
    """Prepare a run that starts from an SFT adapter: returns the folder to load the merged model from.

    When new adapters train on top (`keep_merged`), the merged model is saved to `<output_dir>/merged_base`
    (main process first) so the new adapter's `base_model_name_or_path` names the model it was trained on;
    otherwise None (the merge happens in memory in `load_model`).
    """
    from accelerate import PartialState

    if not keep_merged:
        return None
    merged = Path(training_args.output_dir) / "merged_base"
    with PartialState().main_process_first():
        if PartialState().is_main_process:
            from transformers import AutoTokenizer

            merge_adapter(adapter_dir, model_args, training_args).save_pretrained(merged, safe_serialization=True)
            AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(merged)
    return str(merged)


def load_model(model_args, training_args, tokenizer, quantization_config=None):
    """A causal LM in the configured dtype (fp32 on CPU, bf16 where supported), optionally quantized.

    `model_name_or_path` may be an adapter folder (an SFT LoRA/QLoRA output): its base and adapter are merged in
    full precision first; with `quantization_config` or new adapters on top, via `<output_dir>/merged_base`.
    """
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM

    name = resolve_model_path(model_args.model_name_or_path)
    if is_adapter_dir(name):
        merged_dir = start_from_adapter(name, model_args, training_args,
                                        keep_merged=quantization_config is not None or bool(model_args.use_peft))
        if merged_dir is None:
            model = merge_adapter(name, model_args, training_args)
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
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, name, "model", **kwargs)
    if quantization_config is not None and not torch.cuda.is_available():
        check_cpu_4bit_shapes(model, name)
        keep_4bit_weights_trainable(model)
    return fit_to_tokenizer(model, tokenizer)


def keep_4bit_weights_trainable(model) -> int:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference in a model that is being trained.

    On a CPU with AVX512-BF16, `Linear4bit.forward` in eval mode without gradients (any `generate`: held-out exact
    match before training, sample generations) converts its weights for good to a packed inference layout, and
    later training forwards then run a kernel that passes no gradient to the layer's input (bitsandbytes 0.50):
    measured, the input-gradient norm fell from 6.8 to 0.13 after one `generate`, and QLoRA stalled on a loss
    plateau (52 % held-out exact match where LoRA reaches 95 %). Training keeps the dequantize-and-matmul path
    everywhere. Returns the number of 4-bit layers it set.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def fit_to_tokenizer(model, tokenizer):
    """Room for tokens the tokenizer added; generation stops at end of turn and pads with the real pad token."""
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    # Generation stops at the template's end-of-turn token (and eos) and pads with the real pad token.
    stop = stop_token_ids(tokenizer)
    model.generation_config.eos_token_id = stop[0] if len(stop) == 1 else stop
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def check_cpu_4bit_shapes(model, name: str, out_block: int = 32, in_block: int = 64) -> None:
    """bitsandbytes' CPU 4-bit kernels need every quantized layer's output size divisible by 32 and its input size
    by the quantization block size, 64 (else a reshape error deep inside bitsandbytes at the first forward)."""
    bad = sorted({f"{n.split('.')[-1]} (in {m.in_features}, out {m.out_features})" for n, m in model.named_modules()
                  if type(m).__name__ == "Linear4bit" and (m.out_features % out_block or m.in_features % in_block)})
    if bad:
        raise InstructkitError(f"4-bit layers of {name} cannot run on this CPU: bitsandbytes' CPU kernels need input "
                               f"sizes that are multiples of {in_block} and output sizes that are multiples of "
                               f"{out_block} ({', '.join(bad[:4])}).",
                               fix="use recipes/sft_lora.py on CPU, or run QLoRA on a GPU.")


def qlora_config(model_args):
    """4-bit NF4 with double quantization; compute dtype = the model dtype (fp32 on CPU, bf16 on GPUs).

    Under ZeRO-3 / FSDP the packed 4-bit weights are stored in the compute dtype (`bnb_4bit_quant_storage`), so
    the sharding sees one dtype across the model (uint8 storage fails there).
    """
    from trl import get_quantization_config

    model_args.load_in_4bit = True
    model_args.dtype = str(torch_dtype(model_args.dtype)).removeprefix("torch.")
    if sharding() is not None and not model_args.bnb_4bit_quant_storage:
        model_args.bnb_4bit_quant_storage = model_args.dtype
    return get_quantization_config(model_args)


def reference_model(model, peft_config, training_args):
    """DPO's reference, always the starting policy and never reloaded from a path (TRL would re-read
    `config._name_or_path`, which is wrong for a merged or in-memory model): under LoRA none is needed (the adapter
    disabled is the start); with precomputed reference log-probs neither; otherwise a frozen in-memory copy.
    """
    import copy

    if peft_config is not None or training_args.precompute_ref_log_probs:
        return None
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def lora_config(model_args, model=None, new_tokens=()):
    """LoRA from the `lora_*` keys; all linear layers unless `lora_target_modules` names others.

    `new_tokens` (ids the chat template added, see `load_tokenizer`) must be learned too: `train_new_tokens`.
    """
    from trl import get_peft_config

    model_args.use_peft = True
    targets = model_args.lora_target_modules
    if targets in (None, [], ["all-linear"]):
        model_args.lora_target_modules = "all-linear"
    elif isinstance(targets, str) and targets != "all-linear":
        # TRL turns a one-item list into a string, which PEFT would read as a full-name regex
        model_args.lora_target_modules = [targets]
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
    from instructkit.runs import log

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
    dtype = quantization_config.bnb_4bit_compute_dtype
    for name, param in model.named_parameters():
        # TRL keeps DoRA's magnitude vector in fp32 on purpose (bf16 can freeze its small updates)
        if param.requires_grad and param.dtype != dtype and "lora_magnitude_vector" not in name:
            param.data = param.data.to(dtype)


def load_for_inference(name: str, dtype: str | None = None, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer) of a saved run, to answer prompts with: a model folder, an adapter folder
    (merged into its full-precision base in memory), a hub name or 'embedded'."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name, "MODEL")
    if is_adapter_dir(path):
        model = merge_adapter(path, SimpleNamespace(dtype=dtype), SimpleNamespace(trust_remote_code=trust_remote_code))
        tokenizer_from = path if (Path(path) / "tokenizer_config.json").is_file() else model.name_or_path
    else:
        model = _from_pretrained(AutoModelForCausalLM.from_pretrained, path, "model", dtype=torch_dtype(dtype),
                                 use_safetensors=True, trust_remote_code=trust_remote_code)
        tokenizer_from = path
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, tokenizer_from, "tokenizer",
                                 trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # batches are left-padded; the pad is masked out, so eos serves
        tokenizer.pad_token = tokenizer.eos_token
    model = fit_to_tokenizer(model, tokenizer).requires_grad_(False)
    return (model.to("cuda") if torch.cuda.is_available() else model).eval(), tokenizer
