"""4-bit NF4 (QLoRA) through bitsandbytes: the quantization config, and what bitsandbytes needs on a CPU."""

from __future__ import annotations

import functools

from instructkit.errors import InstructkitError
from instructkit.log import log


def qlora_config(model_args):
    """4-bit NF4 from a recipe's resolved ModelConfig (`config.resolved.resolve_model`: compute dtype = the
    model dtype, fp32 on CPU and bf16 on GPUs; under ZeRO-3 / FSDP the packed weights stored in that dtype)."""
    from trl import get_quantization_config

    return get_quantization_config(model_args)


MMAP_THRESHOLD = 65536  # bytes: glibc serves larger blocks with mmap, so their memory goes back when freed
LARGE_DEQUANTIZED_MB = 4.0  # below this per layer (toy models) the heap's growth is small and speed matters more


def return_large_frees(name: str) -> bool:
    """Before a 4-bit load of model `name` whose layers dequantize to large buffers (>= 4 MB by its config: any real
    model), make glibc serve blocks of 64 KB and more with their own mmap for the rest of the process (`mallopt`,
    what `MALLOC_MMAP_THRESHOLD_=65536` in the environment does), so that what each step frees goes back to the
    system; True if set.

    A 4-bit run on CPU dequantizes every linear layer's weight in every forward and backward pass; with glibc's
    defaults (a threshold that rises after large frees) those buffers come from the heap, which fragments and grows
    from step to step (measured at the Qwen2.5-0.5B shape: 1,650 / 1,931 MB after steps 1-2, peak 2,047 MB, against
    1,140-1,145 MB, peak 1,262 MB, with the threshold fixed). Each dequantized weight is then a fresh mapping, so
    steps are slower (1.5 -> 2.8 s there; benchmarks/RESULTS.md §2, s/step). Left alone when MALLOC_MMAP_THRESHOLD_
    is set (the user's choice, e.g. 33554432 to trade memory for speed). No-op where there is no glibc."""
    import os

    largest = _largest_linear_mb(name)
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or largest < LARGE_DEQUANTIZED_MB:
        return False
    mallopt = _glibc("mallopt")
    if not (mallopt and mallopt(-3, MMAP_THRESHOLD)):  # -3: M_MMAP_THRESHOLD
        return False
    log(f"model: 4-bit layers dequantize to up to {largest:,.0f} MB each step: freed blocks of 64 KB and more go "
        "back to the system (slower steps, bounded memory; set MALLOC_MMAP_THRESHOLD_ to choose otherwise)")
    return True


def _largest_linear_mb(name: str) -> float:
    """The fp32 size of the model's largest MLP weight (hidden x intermediate), from its config; 0 if unknown."""
    config = _saved_config(name)
    if config is None:
        return 0.0
    config = config.get_text_config()
    hidden = getattr(config, "hidden_size", 0) or 0
    return hidden * (getattr(config, "intermediate_size", None) or 4 * hidden) * 4 / 2**20


def release_freed_memory() -> bool:
    """Hand the heap memory glibc keeps after loading back to the system (`malloc_trim(0)`); True if memory went back.

    Loading a checkpoint and quantizing it layer by layer frees hundreds of MB of buffers; glibc's allocator raises
    its mmap threshold after such frees and keeps them in its heap for the rest of the run, where they count as the
    process's memory while training (benchmarks/RESULTS.md §2). Trimming once after loading returns them without
    changing how training allocates (a fixed `MALLOC_MMAP_THRESHOLD_` does too, but makes every step's dequantized
    weights a fresh mmap: 40-50 % slower steps, measured). At the Qwen2.5-0.5B shape: -103 MB while training,
    -108 MB process peak (2,066 / 2,309 MB). No-op where there is no glibc."""
    trim = _glibc("malloc_trim")
    return bool(trim and trim(0))


def _glibc(function: str):
    """A function of the C library if it is glibc's (musl and macOS have no malloc_trim / these mallopt options)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None


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


def frozen_embeddings_to_bf16(model, quantization_config) -> float:
    """An fp32 CPU QLoRA model's frozen input embedding and LM head stored in bf16, the dtype of the checkpoint
    they came from, and computed in fp32 as before; returns the MB this frees (0 where nothing changes).

    NF4 quantizes the linear layers only, so the embedding is the largest thing left in an fp32 run: at the
    Qwen2.5-0.5B shape 136 M of 494 M parameters (tied to the LM head), 545 MB in fp32, 272 MB in bf16. The values
    are those of the bf16 checkpoint, so nothing changes numerically: looked-up rows are cast to fp32, and the LM
    head multiplies by its weight upcast to fp32 a block of rows at a time (`bf16_stored_head`), never whole. Skipped
    on a GPU (bf16 compute there), for a checkpoint stored in another dtype (rounding would change it), and when
    either layer trains (new template tokens). Call after the trainer is built (benchmarks/RESULTS.md §2).
    """
    import torch

    if quantization_config is None or torch.cuda.is_available() \
            or quantization_config.bnb_4bit_compute_dtype != torch.float32 \
            or _checkpoint_dtype(model) != torch.bfloat16:
        return 0.0
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if type(embedding) is not torch.nn.Embedding or type(head) is not torch.nn.Linear or head.bias is not None:
        return 0.0
    params = {id(p): p for p in (embedding.weight, head.weight)}.values()
    if any(p.requires_grad or p.dtype != torch.float32 for p in params):
        return 0.0
    freed = sum(p.numel() for p in params) * 2 / 2**20
    for p in params:
        p.data = p.data.to(torch.bfloat16)  # in place of the Parameter: a tied head stays tied
    embedding.register_forward_hook(_output_to_fp32)
    model.set_output_embeddings(bf16_stored_head(head.weight))
    _smaller_fused_head_blocks(head.weight.shape[1])
    release_freed_memory()
    log(f"model: frozen embedding and LM head stored in bf16 as in the checkpoint, computed in fp32: "
        f"{freed:,.0f} MB less")
    return freed


def _smaller_fused_head_blocks(hidden_size: int, block_mb: float = 16.0) -> None:
    """TRL's fused LM head (SFT's loss and token metrics) upcasts its weight 32,768 vocabulary rows at a time: over a
    bf16 weight that is a new fp32 block each time (117 MB at hidden size 896, two alive at a switch), where an fp32
    weight needs none. Blocks of ~16 MB keep the saving (measured: 190 MB less at the peak of a backward pass). The
    block size is a module constant of trl.trainer.utils, read at each call; left alone if TRL renames it."""
    import trl.trainer.utils as trl_utils

    if isinstance(getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", None), int):
        rows = max(1024, int(block_mb * 2**20 / (4 * hidden_size)) // 1024 * 1024)
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = min(trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, rows)


def _checkpoint_dtype(model):
    """The dtype the model's checkpoint stores (its config.json; the loaded config says the dtype loaded in)."""
    config = _saved_config(model.name_or_path)
    return None if config is None else config.dtype


def _saved_config(name: str):
    """The model's config as saved (config.json), or None where there is none it can read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError, KeyError):  # no config.json, or a model type this transformers does not know
        return None


def _output_to_fp32(module, args, output):
    return output.float()


def bf16_stored_head(weight):
    """A frozen, bias-free LM head over `weight` (bf16), multiplying in fp32 (`_head_class`)."""
    return _head_class()(weight)


@functools.cache
def _head_class():  # torch is imported when a head is made, not with this module
    import torch

    class _Logits(torch.autograd.Function):
        """hidden @ weight.T in fp32 with `weight` kept in bf16: upcast BLOCK rows at a time, again in backward."""

        BLOCK = 4096

        @staticmethod
        def forward(ctx, hidden, weight):
            ctx.save_for_backward(weight)
            logits = hidden.new_empty(*hidden.shape[:-1], weight.shape[0])
            for i in range(0, weight.shape[0], _Logits.BLOCK):
                logits[..., i:i + _Logits.BLOCK] = hidden @ weight[i:i + _Logits.BLOCK].float().T
            return logits

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            out = None
            for i in range(0, weight.shape[0], _Logits.BLOCK):
                part = grad[..., i:i + _Logits.BLOCK] @ weight[i:i + _Logits.BLOCK].float()
                out = part if out is None else out.add_(part)
            return out, None

    class Head(torch.nn.Module):
        """A frozen, bias-free LM head whose weight is stored in bf16 and multiplied in fp32."""

        def __init__(self, weight):
            super().__init__()
            self.weight = weight
            self.bias = None  # TRL's fused LM head reads it (and upcasts the weight by blocks as well)
            self.in_features, self.out_features = weight.shape[1], weight.shape[0]

        def forward(self, hidden):
            return _Logits.apply(hidden, self.weight)

    return Head
