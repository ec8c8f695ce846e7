"""How `accelerate launch` runs this process, and what that means for the model: sharded or replicated weights,
threads per process, what actually runs (recorded, so a silent fallback shows), and full weights for generation.

Model loading must follow the launch: sharded runs (ZeRO-3, FSDP) take no `device_map` (DeepSpeed / FSDP place the
shards) and store 4-bit weights in the compute dtype so they shard like any other tensor; replicated runs (one
process, DDP, ZeRO-2) put each process's model on its own device. Read from the variables `accelerate launch` sets.
"""

from __future__ import annotations

import contextlib
import os
import platform

from instructkit.errors import InstructkitError
from instructkit.log import log

# bitsandbytes issue #1945 (open): FSDP2 canonicalizes NaN bit patterns of 4-bit weights packed into 16-bit floats
# on CUDA, so the forward pass computes on altered weights. Measured here on CPU: not reproduced (docs/launching.md).
BNB_1945 = "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1945"


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


def fsdp_version() -> int | None:
    """The FSDP version an FSDP launch asks for (accelerate's launcher exports FSDP_VERSION; 1 when unset)."""
    return int(os.environ.get("FSDP_VERSION", "1")) if sharding() == "fsdp" else None


def check_launch(model_args) -> None:
    """Refuse, before anything loads, the launch x model combinations known to be broken (docs/launching.md)."""
    import torch

    has_gpu = torch.cuda.is_available()
    if sharding() == "fsdp" and not has_gpu and fsdp_version() != 2:
        raise InstructkitError(
            f"FSDP version {fsdp_version()} cannot run on a machine without a GPU (accelerate's FSDP1 plugin needs a "
            "CUDA/XPU/... device).", fix="set fsdp_version: 2 in the accelerate config (accelerate_configs/fsdp.yaml "
                                         "does), or launch with accelerate_configs/ddp.yaml.")
    storage = str(getattr(model_args, "bnb_4bit_quant_storage", None) or "uint8").removeprefix("torch.")
    if sharding() == "fsdp" and has_gpu and getattr(model_args, "load_in_4bit", False) and storage in (
            "bfloat16", "float16"):
        raise InstructkitError(
            f"FSDP with 4-bit weights stored as {storage} computes wrong outputs on GPUs (FSDP2 rewrites the NaN bit "
            f"patterns of the packed weights: bitsandbytes issue #1945, {BNB_1945}).",
            fix="set bnb_4bit_quant_storage: uint8 (accelerate then keeps the 4-bit weights out of the shards, "
                "replicated on every GPU), or launch with accelerate_configs/ddp.yaml.")


def enable_fsdp_on_cpu() -> None:
    """Let an FSDP2 launch (accelerate_configs/fsdp.yaml) run FSDP2 on a machine without a GPU, instead of silently
    running DDP. Call before the trainer (its Accelerator) exists; a second call does nothing.

    accelerate 1.15 makes a launch FSDP only for accelerator devices: `AcceleratorState.__init__` sets
    distributed_type = FSDP and keeps the plugin only inside `elif self.distributed_type in [MULTI_GPU, MULTI_XPU,
    ...]` (accelerate/state.py:986-1015), and a CPU launch is MULTI_CPU (state.py:800-808). The plugin is dropped,
    the Trainer's `is_fsdp_enabled` (transformers/trainer.py:875) is False and `Accelerator.prepare_model` wraps the
    model in DDP (accelerator.py:2058). Here the same assignments (state.py:1013-1015, and state.py:1037, which
    copies the type into PartialState for later AcceleratorState() calls) also apply to MULTI_CPU; the rest of
    accelerate's FSDP2 path (fsdp2_prepare_model, get_state_dict, save/load_state) is device-agnostic and runs over
    gloo as it is. FSDP1 stays refused (`check_launch`).
    """
    import torch

    if sharding() != "fsdp" or fsdp_version() != 2 or torch.cuda.is_available():
        return
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__
    if getattr(original, "instructkit_cpu_fsdp", False):
        return

    def __init__(self, mixed_precision=None, cpu=False, dynamo_plugin=None, deepspeed_plugin=None, fsdp_plugin=None,
                 *args, **kwargs):
        original(self, mixed_precision, cpu, dynamo_plugin, deepspeed_plugin, fsdp_plugin, *args, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    __init__.instructkit_cpu_fsdp = True
    AcceleratorState.__init__ = __init__


def weights_sharded(trainer) -> bool:
    """Whether `trainer` runs with sharded weights (FSDP / ZeRO-3): then no single process can run the model alone."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_fsdp_enabled or getattr(plugin, "zero_stage", None) == 3)


def frozen_copy(model):
    """A frozen in-memory copy of `model` (eval mode, no gradients), e.g. DPO's reference: the starting weights.

    Under ZeRO-3 `copy.deepcopy` is wrong: the model was built under `deepspeed.zero.Init`, each `param.data` is an
    empty placeholder (the values sit in `param.ds_tensor`), and a deep copy holds placeholders DeepSpeed takes as
    already partitioned with 0 elements (the reference's first forward fails: 'ds_numel': 0). So the copy is built
    partitioned too (`from_config` enters zero.Init) and filled one gathered weight at a time, on every process.
    """
    import copy

    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return copy.deepcopy(model).eval().requires_grad_(False)
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_config(model.config, dtype=model.dtype)
    source = dict(model.named_parameters())
    with torch.no_grad():
        for name, param in ref.named_parameters():
            with deepspeed.zero.GatheredParameters([source[name], param], modifier_rank=0):
                if torch.distributed.get_rank() == 0:
                    param.data.copy_(source[name].data)
        for name, buffer in model.named_buffers():
            ref.get_buffer(name).copy_(buffer)
    ref.generation_config = copy.deepcopy(model.generation_config)
    return ref.eval().requires_grad_(False)


def launch_summary(trainer) -> dict:
    """What accelerate actually runs, from its state (not from the launch config): distributed type, FSDP version /
    ZeRO stage and offload, processes and machines, backend, and the class the model is wrapped in (after training:
    FSDP..., DeepSpeedEngine, DistributedDataParallel)."""
    state = trainer.accelerator.state
    fsdp = getattr(state, "fsdp_plugin", None)
    ds = getattr(state, "deepspeed_plugin", None)
    zero = ds.deepspeed_config.get("zero_optimization", {}) if ds is not None else {}
    local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    return {"distributed_type": state.distributed_type.value, "processes": state.num_processes,
            "machines": max(1, state.num_processes // max(local, 1)), "backend": state.backend,
            "fsdp_version": getattr(fsdp, "fsdp_version", None), "zero_stage": getattr(ds, "zero_stage", None),
            "offload": {k: zero[k]["device"] for k in ("offload_param", "offload_optimizer")
                        if zero.get(k, {}).get("device", "none") != "none"} or None,
            "model_wrapper": type(trainer.model_wrapped).__name__}


def format_launch(summary: dict) -> str:
    kind = summary["distributed_type"]
    if summary["fsdp_version"]:
        kind += f" (fsdp_version {summary['fsdp_version']})"
    if summary["zero_stage"] is not None:
        kind += f" (ZeRO-{summary['zero_stage']}" + (f", offload {summary['offload']})" if summary["offload"] else ")")
    return (f"launch: {kind}, {summary['processes']} process(es) on {summary['machines']} machine(s), backend "
            f"{summary['backend']}, model in {summary['model_wrapper']}")


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


def _all_ranks_agree(flag: bool) -> bool:
    """True when `flag` holds on every process (a collective: every process calls it)."""
    import torch
    from accelerate import PartialState

    if PartialState().num_processes == 1:
        return flag
    value = torch.tensor([0 if flag else 1], device=PartialState().device)
    torch.distributed.all_reduce(value)
    return int(value.item()) == 0


@contextlib.contextmanager
def _generate_alone(model):
    """`model.generate` without collectives: the weights are whole on this process. Under ZeRO-3 / FSDP transformers
    otherwise steps every rank's decoding together (synced_gpus defaults to is_deepspeed_zero3_enabled() or
    is_fsdp_managed_module, transformers/generation/utils.py:2566), which hangs a rank that generates alone."""
    import functools

    own = model.__dict__.get("generate")  # FSDP2's registered forward method (Trainer: trainer.py:1798), if any
    model.generate = functools.partial(model.generate, synced_gpus=False)
    try:
        yield model
    finally:
        if own is None:
            del model.generate
        else:
            model.generate = own


@contextlib.contextmanager
def _fsdp2_unsharded(model):
    """Every FSDP2 unit of `model` all-gathered once (collective) and kept whole until exit, so forward runs no
    collectives. On exit the shards are restored with each unit's reshard-after-forward setting as it was (torch
    keeps it in FSDPState._auto_reshard_after_forward and each group's post_forward_mesh_info:
    torch/distributed/fsdp/_fully_shard/_fsdp_state.py:118, _fully_shard.py:453-488)."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    saved = [(m._get_fsdp_state()._auto_reshard_after_forward,
              [g.post_forward_mesh_info for g in m._get_fsdp_state()._fsdp_param_groups]) for m in units]
    for m in units:
        m.set_reshard_after_forward(False, recurse=False)
    for m in units:  # the same order on every rank
        m.unshard()
    try:
        yield model
    finally:
        for m, (auto, infos) in zip(units, saved):
            m.reshard()
            state = m._get_fsdp_state()
            state._auto_reshard_after_forward = auto
            for group, info in zip(state._fsdp_param_groups, infos):
                group.post_forward_mesh_info = info


def _fsdp_wrapped(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


@contextlib.contextmanager
def _full_weights(trainer):
    """The model with its full weights on this process (a collective under ZeRO-3 / FSDP); None when some process
    holds no weights yet (nothing to gather from: e.g. parameters still on the meta device)."""
    kind = "zero3" if getattr(getattr(trainer.accelerator.state, "deepspeed_plugin", None), "zero_stage", 0) == 3 \
        else "fsdp" if trainer.is_fsdp_enabled else None
    if kind == "zero3":
        import deepspeed as ds
        from trl.models.utils import unwrap_model_for_generation

        if isinstance(trainer.model_wrapped, ds.DeepSpeedEngine):  # trained: TRL gathers and lifts ZeRO's hooks
            with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model:
                yield model
        else:
            with ds.zero.GatheredParameters(list(trainer.model.parameters())):
                yield trainer.model
    elif kind == "fsdp" and _fsdp_wrapped(trainer.model):
        with _fsdp2_unsharded(trainer.model) as model:
            yield model
    else:
        loaded = not any(p.is_meta for p in trainer.model.parameters())
        yield trainer.model if kind is None or _all_ranks_agree(loaded) else None


@contextlib.contextmanager
def weights_for_generation(trainer):
    """The trainer's model with its full weights on this process, for `generate`; every process must enter.

    Under ZeRO-3 / FSDP the weights are gathered for the duration (one all-gather), and `generate` inside runs no
    collectives, so processes may answer different prompts. During training every process must then run the same
    number of forward passes (FSDP2 / ZeRO-3 keep per-process state of the forwards they saw). Yields None, with
    the reason logged, when there are no weights to gather.
    """
    sharded = weights_sharded(trainer)
    with _full_weights(trainer) as model:
        if model is None:
            log("weights are not loaded on every process yet (FSDP loads them on the main process only until the "
                "trainer shards the model), so nothing can generate from them here")
            yield None
        elif sharded:
            with _generate_alone(model):
                yield model
        else:
            yield model
