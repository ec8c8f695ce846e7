"""How `accelerate launch` runs this process, and what that means for the model: sharded or replicated weights,
threads per process, and full weights for generation.

Model loading must follow the launch: sharded runs (ZeRO-3, FSDP) take no `device_map` (DeepSpeed / FSDP place the
shards) and store 4-bit weights in the compute dtype so they shard like any other tensor; replicated runs (one
process, DDP, ZeRO-2) put each process's model on its own device. Read from the variables `accelerate launch` sets.
"""

from __future__ import annotations

import contextlib
import os
import platform


def _on(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def deepspeed() -> bool:
    """Launched with a DeepSpeed accelerate config."""
    return _on("ACCELERATE_USE_DEEPSPEED")


def sharding() -> str | None:
    """'zero3', 'fsdp' or None (weights replicated on every process)."""
    if _on("ACCELERATE_USE_FSDP"):
        return "fsdp"
    if deepspeed() and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        return "zero3"
    return None


def weights_sharded(trainer) -> bool:
    """Whether `trainer` runs with sharded weights (FSDP / ZeRO-3): then no single process can run the model alone."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_fsdp_enabled or getattr(plugin, "zero_stage", None) == 3)


def use_all_cpu_cores() -> None:
    """On CPU, give each process its share of the cores (cores / local processes).

    `accelerate launch` sets OMP_NUM_THREADS=1 unless told otherwise, which halves a 2-core CPU run.
    INSTRUCTKIT_NUM_THREADS overrides the choice.
    """
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available():
        return
    wanted = os.environ.get("INSTRUCTKIT_NUM_THREADS")
    if wanted is None:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", PartialState().num_processes))
        wanted = max(1, len(os.sched_getaffinity(0)) // max(local, 1))
    torch.set_num_threads(int(wanted))


def machine_summary(training_args) -> dict:
    """Where and how this run computes, for the log and metrics.json."""
    import torch
    from accelerate import PartialState

    state = PartialState()
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    return {"device": str(state.device), "processes": state.num_processes, "precision": precision,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}


@contextlib.contextmanager
def weights_for_generation(trainer):
    """The trainer's model with its full weights on this process, for `generate`.

    Under ZeRO-3 each process holds a shard of every weight: they are gathered for the duration (through TRL's
    `unwrap_model_for_generation` once DeepSpeed wraps the model, directly before training starts).
    """
    if sharding() != "zero3":
        yield trainer.model
        return
    import deepspeed as ds
    from trl.models.utils import unwrap_model_for_generation

    if isinstance(trainer.model_wrapped, ds.DeepSpeedEngine):
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model:
            yield model
    else:
        with ds.zero.GatheredParameters(list(trainer.model.parameters())):
            yield trainer.model
