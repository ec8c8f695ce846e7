"""4-bit NF4 (QLoRA) through bitsandbytes: the quantization config, and what bitsandbytes needs on a CPU."""

from __future__ import annotations

from instructkit.errors import InstructkitError


def qlora_config(model_args):
    """4-bit NF4 from a recipe's resolved ModelConfig (`config.resolved.resolve_model`: compute dtype = the
    model dtype, fp32 on CPU and bf16 on GPUs; under ZeRO-3 / FSDP the packed weights stored in that dtype)."""
    from trl import get_quantization_config

    return get_quantization_config(model_args)


def release_freed_memory() -> bool:
    """Hand the heap memory glibc keeps after loading back to the system (`malloc_trim(0)`); True if memory went back.

    Loading a checkpoint and quantizing it layer by layer frees hundreds of MB of buffers; glibc's allocator raises
    its mmap threshold after such frees and keeps them in its heap for the rest of the run, where they count as the
    process's memory while training (benchmarks/RESULTS.md §2). Trimming once after loading returns them without
    changing how training allocates (a fixed `MALLOC_MMAP_THRESHOLD_` does too, but makes every step's dequantized
    weights a fresh mmap: 40-50 % slower steps, measured). At the Qwen2.5-0.5B shape: -103 MB while training,
    -108 MB process peak (2,066 / 2,309 MB). No-op where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        return False
    return bool(trim and trim(0))


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
