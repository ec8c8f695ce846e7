"""How `accelerate launch` runs this process: whether the weights are sharded (ZeRO-3, FSDP) or replicated.

Model loading must follow the launch: sharded runs take no `device_map` (DeepSpeed / FSDP place the shards) and
store 4-bit weights in the compute dtype so they shard like any other tensor; replicated runs (one process, DDP,
ZeRO-2) put each process's model on its own device. Read from the variables `accelerate launch` sets.
"""

from __future__ import annotations

import os


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
