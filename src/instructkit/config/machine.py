"""Defaults that depend on the machine, so a config written on a GPU box still parses on a CPU one."""

from __future__ import annotations

from typing import Any

from instructkit.distributed import deepspeed

# Trainer defaults instructkit changes. logging_nan_inf_filter: the Trainer would log a nan/inf loss as the average of
# earlier ones; logged as it is, the run stops on it (training.callbacks.StopOnNonFiniteLoss), also under fp16.
OUR_DEFAULTS = {"logging_nan_inf_filter": False}


def machine_defaults() -> dict[str, Any]:
    """bf16 where the GPU supports it, else fp32; CPU runs over gloo.

    TRL defaults `bf16` to True, and `TrainingArguments.__post_init__` then fails on a machine without bf16.
    """
    import torch

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # Several processes on a CPU-only machine need use_cpu (the Trainer then sets up gloo DDP; without it each
    # process trains alone) -- except under DeepSpeed, which use_cpu would switch off.
    cpu_only = not torch.cuda.is_available()
    defaults = {"bf16": bf16, "dtype": "bfloat16" if bf16 else "float32", "model_name_or_path": "embedded",
                "use_cpu": cpu_only and not deepspeed()}
    if cpu_only and deepspeed():
        # DeepSpeed on CPU: with no backend named, accelerate's state takes the launch for a single process
        # (each rank then reports world size 1 and DeepSpeed's batch-size check fails); gloo is the CPU backend.
        defaults["ddp_backend"] = "gloo"
    return defaults


def compute_dtype(name: str | None) -> str:
    """The dtype name a model computes in: 'auto' (or unset) becomes bfloat16 where the GPU supports it, else
    float32 (bf16 matmuls ran ~45x slower than fp32 on a CPU without AMX / avx512_bf16)."""
    import torch

    if name in (None, "auto"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return name
