"""What depends on the machine: defaults, so a config written on a GPU box still parses on a CPU one, and the
settings this machine cannot honour, found when the config is read, before any data or model loads.

`machine_checks` looks at the values the run would get (YAML + command line + defaults) and returns each setting
that would fail here later (an attention kernel whose package or GPU is absent, bf16 / fp16 / tf32 without the
hardware, push_to_hub offline or without a token, a report_to integration that is not installed, an optimizer
whose package is missing, more dataset processes than cores, Liger kernels without their package or a GPU) with
the command-line override that makes the run go on this machine. Nothing is switched for the user: the overrides
are printed, the user adds them. What merely runs slower here (bf16 on a CPU without native bf16) is a warning.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
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


# Optimizers (transformers' OptimizerNames) that need a package of their own, by name prefix.
OPTIMIZER_PACKAGES = {"galore": "galore_torch", "apollo": "apollo_torch", "lomo": "lomo_optim",
                      "adalomo": "lomo_optim", "grokadamw": "grokadamw", "schedule_free": "schedulefree",
                      "adamw_torch_4bit": "torchao", "adamw_torch_8bit": "torchao", "stable_adamw": "optimi",
                      "adamw_anyprecision": "torchdistx", "adamw_apex_fused": "apex", "adamw_torch_npu_fused": "torch_npu",
                      "adamw_torch_xla": "torch_xla", "adamw_bnb": "bitsandbytes", "adamw_8bit": "bitsandbytes",
                      "paged_": "bitsandbytes", "lion": "bitsandbytes", "rmsprop_bnb": "bitsandbytes",
                      "rmsprop_8bit": "bitsandbytes", "rmsprop_32bit": "bitsandbytes", "ademamix": "bitsandbytes"}
TRUE = ("1", "true", "yes", "on")


@dataclass
class MachineChecks:
    problems: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def cannot(self, setting: str, why: str, override: str) -> None:
        self.problems.append(f"{setting}: {why} (override: {override})")
        self.overrides.append(override)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return frozenset()


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_checks(values: dict[str, Any]) -> MachineChecks:
    """Every setting in `values` (a run's keys with their values) this machine cannot honour; see the module."""
    import torch

    checks = MachineChecks()
    cuda = torch.cuda.is_available() and values.get("use_cpu") is not True
    _attention(values.get("attn_implementation"), cuda, checks)
    _precision(values, cuda, checks)
    _hub(values, checks)
    _report_to(values.get("report_to"), checks)
    _optimizer(values.get("optim"), cuda, checks)
    procs = values.get("dataset_num_proc")
    if isinstance(procs, int) and procs > cpu_cores():
        checks.cannot(f"dataset_num_proc: {procs}", f"this machine has {cpu_cores()} CPU cores",
                      f"--dataset_num_proc {cpu_cores()}")
    if values.get("use_liger_kernel") is True and not (importlib.util.find_spec("liger_kernel") and cuda):
        checks.cannot("use_liger_kernel: true", "Liger's kernels need the liger-kernel package and a CUDA GPU "
                      f"(liger-kernel {'installed' if importlib.util.find_spec('liger_kernel') else 'not installed'}"
                      f", {'a' if cuda else 'no'} CUDA GPU)", "--use_liger_kernel false")
    return checks


def _attention(name, cuda: bool, checks: MachineChecks) -> None:
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    if not isinstance(name, str):
        return
    kernel = name.split("|")[-1]  # "paged|flash_attention_2"
    available = {"flash_attention_2": (is_flash_attn_2_available, "flash-attn"),
                 "flash_attention_3": (is_flash_attn_3_available, "flash-attn 3 (flash_attn_3)")}
    if kernel in available and not available[kernel][0]():
        package = available[kernel][1]
        has_package = importlib.util.find_spec(package.split()[0].replace("-", "_")) is not None
        checks.cannot(f"attn_implementation: {name}", f"{kernel} needs the {package} package and a CUDA GPU; this "
                      f"machine has {'the package' if has_package else 'no ' + package} and "
                      f"{'a CUDA GPU' if cuda else 'no CUDA GPU'}", "--attn_implementation sdpa")
    elif "/" in kernel and (os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE
                            or importlib.util.find_spec("kernels") is None):
        checks.cannot(f"attn_implementation: {name}", "a hub kernel needs the kernels package and the Hugging Face "
                      "Hub (offline here)" if importlib.util.find_spec("kernels") else
                      "a hub kernel needs the kernels package, which is not installed", "--attn_implementation sdpa")


def _precision(values: dict, cuda: bool, checks: MachineChecks) -> None:
    import torch

    native = {"bf16": {"avx512_bf16", "amx_bf16"}, "fp16": {"avx512_fp16", "amx_fp16"}}
    for key in ("bf16", "fp16"):
        if values.get(key) is not True:
            continue
        if cuda and key == "bf16" and not torch.cuda.is_bf16_supported():
            checks.cannot("bf16: true", "this GPU has no bf16 (it needs compute capability 8.0, Ampere, or newer)",
                          "--bf16 false --fp16 true")
        elif not cuda and not native[key] & cpu_flags():
            checks.warnings.append(f"{key}: true on this CPU, which has no native {key[:2]}16 "
                                   f"({' / '.join(sorted(native[key]))}): it runs, but many times slower than fp32 "
                                   f"(bf16 matmuls measured ~45x slower here); --{key} false trains in fp32")
    dtype = values.get("dtype")
    kind = {"bfloat16": "bf16", "float16": "fp16"}.get(dtype)
    if kind and not cuda and not native[kind] & cpu_flags():
        checks.warnings.append(f"dtype: {dtype} on this CPU, which has no native support for it: the model computes "
                               "many times slower than in float32; --dtype float32 (or auto) computes in fp32")
    if values.get("tf32") is True and not cuda:
        checks.cannot("tf32: true", "TF32 needs an NVIDIA GPU (Ampere or newer)", "--tf32 false")


def _hub(values: dict, checks: MachineChecks) -> None:
    if values.get("push_to_hub") is not True:
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE:
        checks.cannot("push_to_hub: true", "the Hugging Face Hub is offline here (HF_HUB_OFFLINE is set)",
                      "--push_to_hub false")
        return
    from huggingface_hub import get_token

    if not (values.get("hub_token") or get_token()):
        checks.cannot("push_to_hub: true", "no Hugging Face token (hf auth login, the HF_TOKEN variable or "
                      "hub_token)", "--push_to_hub false")


def _report_to(report_to, checks: MachineChecks) -> None:
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    wanted = [report_to] if isinstance(report_to, str) else list(report_to or [])
    wanted = [w for w in wanted if w not in ("none", "all")]
    available = set(get_available_reporting_integrations())
    missing = [w for w in wanted if w in INTEGRATION_TO_CALLBACK and w not in available]
    if missing:
        kept = [w for w in wanted if w not in missing] or ["none"]
        checks.cannot(f"report_to: {wanted}", f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                      f"installed (installed here: {', '.join(sorted(available)) or 'none'}; pip install "
                      f"{' '.join(missing)}, or pip install -e '.[tracking]' for tensorboard and trackio)",
                      f"--report_to {' '.join(kept)}")


def _optimizer(name, cuda: bool, checks: MachineChecks) -> None:
    if not isinstance(name, str):
        return
    package = next((p for prefix, p in OPTIMIZER_PACKAGES.items() if name.startswith(prefix)), None)
    if package and importlib.util.find_spec(package) is None:
        checks.cannot(f"optim: {name}", f"it needs the {package} package, which is not installed",
                      "--optim adamw_torch")
    elif package == "bitsandbytes" and name.startswith("paged_") and not cuda:
        checks.warnings.append(f"optim: {name} pages optimizer state between GPU and CPU memory; with no GPU here it "
                               "runs as the same bitsandbytes optimizer in CPU memory")
