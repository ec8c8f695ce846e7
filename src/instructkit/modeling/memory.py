"""`instructkit estimate`: memory per device before anything launches, and whether it fits.

    instructkit estimate --config recipes/configs/sft_qlora.yaml                         # this machine (CPU: RAM)
    instructkit estimate --config my.yaml --gpus 8 --gpu-memory 80GB                     # every strategy
    instructkit estimate --config my.yaml --launch accelerate_configs/deepspeed_zero3.yaml --gpu-memory 24GB

Parameters, gradients, optimizer state and activations for full / LoRA / QLoRA under DDP, ZeRO-2, ZeRO-3 and
ZeRO-3 with CPU offload (FSDP counts as ZeRO-3), from the model's config.json (counted on the meta device: nothing
is loaded) and the recipe config (batch, max_length, activation checkpointing, LoRA rank, 4-bit). The arithmetic:

* weights: the load dtype (bf16 on GPUs that support it, fp32 on CPU); QLoRA: every decoder linear layer in NF4
  (0.5 byte a weight + its quantization constants), everything else (embeddings, norms) in the compute dtype;
* trainable parameters: all (full), or r x (in + out) per adapted linear layer (LoRA, all linear layers unless
  `lora_target_modules` names some), kept in fp32 (PEFT upcasts adapters; QLoRA adapters in the compute dtype);
* gradients: one per trainable parameter, in its dtype; optimizer (AdamW): two states per trainable parameter in its
  dtype, or under DeepSpeed with 16-bit weights an fp32 master copy + two fp32 states (12 bytes, the ZeRO paper's K);
* sharding over N devices: ZeRO-2 splits gradients and optimizer state, ZeRO-3 also the weights (+ one layer gathered
  at a time); offload keeps weights and optimizer state in host RAM (reported separately);
* activations per device, for batch x max_length tokens: ~(6h + 4 kv + 4i) values per token per layer without
  activation checkpointing (the saved inputs of norms, projections, attention output and the gated MLP;
  no seq^2 term: sdpa / FlashAttention keep no attention matrix), one h-sized value per token per layer plus one
  layer's worth with it; plus the LM head's tiles of logits;
* DPO (a config naming `beta`): the reference model's weights too (a frozen copy in the load dtype, sharded like the
  weights; none under LoRA, where the reference is the adapter disabled, or with precomputed reference log-probs),
  and every pair's chosen and rejected answers go through the model together (twice the tokens);
* overhead: ~0.8 GB per GPU (CUDA context, allocator), ~0.7 GB for a CPU process (Python, torch, transformers, TRL).
A shipped per-model config names the hardware it is meant for (`# Meant for: 8 GPUs x 80 GB (accelerate_configs/...)`);
without --gpus / --gpu-memory / --launch it is checked against that. The shapes of the models the per-model configs
name are known (their published config.json) when the hub is not reachable. It is an estimate: allocator fragmentation and framework buffers (DeepSpeed's communication buckets) come on top.
benchmarks/RESULTS.md compares it with measured peaks.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from instructkit.catalog import intended_hardware, launch_configs_dir, recipe_configs, recipe_names
from instructkit.config.arguments import InstructkitArguments
from instructkit.config.parsing import load_checked_config
from instructkit.embedded import current_spec
from instructkit.errors import InstructkitError

GB = 1e9
GPU_OVERHEAD = 0.8 * GB
CPU_OVERHEAD = 0.7 * GB
NF4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}  # double quantization or not
LOGIT_TILE = 32768  # TRL's fused LM head scores the vocabulary in tiles of this many logits per position
STRATEGIES = ("ddp", "zero2", "zero3", "zero3_offload")
STRATEGY_NAMES = {"single": "one device", "ddp": "DDP", "zero2": "ZeRO-2", "zero3": "ZeRO-3 / FSDP",
                  "zero3_offload": "ZeRO-3 + CPU offload"}


@dataclass
class Shape:
    """What memory depends on, from a model config."""

    params: int                                  # every parameter (tied weights once)
    linear: list = field(default_factory=list)   # (name, in, out, count): the decoder's linear layers
    hidden: int = 0
    intermediate: int = 0
    layers: int = 0
    kv_dim: int = 0                              # key/value heads x head size
    vocab: int = 0

    @property
    def linear_params(self) -> int:
        return sum(i * o * n for _, i, o, n in self.linear)


@dataclass
class Setup:
    """What the run does (from the recipe config) and where (from the launch / command line)."""

    mode: str = "full"                  # full | lora | qlora
    strategy: str = "single"            # single | ddp | zero2 | zero3 | zero3_offload
    devices: int = 1
    gpu: bool = False
    dtype_bytes: int = 4                # weights / compute: 4 fp32, 2 bf16/fp16
    batch: int = 8
    seq: int = 1024
    checkpointing: bool = True
    lora_r: int = 16
    lora_targets: tuple = ()            # empty: all linear layers
    double_quant: bool = True
    deepspeed: bool = False
    reference: bool = False             # DPO: a frozen reference copy of the weights
    sequences: int = 1                  # sequences per row through the model (DPO: chosen + rejected)


def shape_from_config(config) -> Shape:
    """Count parameters on the meta device (no memory, no weights) and list the decoder's linear layers."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    linear: dict[tuple, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            key = (name.rsplit(".", 1)[-1], module.in_features, module.out_features)
            linear[key] = linear.get(key, 0) + 1
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return Shape(params=sum(p.numel() for p in model.parameters()),
                 linear=[(n, i, o, c) for (n, i, o), c in sorted(linear.items())], hidden=text.hidden_size,
                 intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
                 layers=text.num_hidden_layers, kv_dim=getattr(text, "num_key_value_heads", heads) * head_dim,
                 vocab=text.vocab_size)


def breakdown(shape: Shape, s: Setup) -> dict:
    """Bytes per device: weights, gradients, optimizer, activations, overhead, total (+ host RAM under offload)."""
    w = s.dtype_bytes
    targets = [l for l in shape.linear if not s.lora_targets or l[0] in s.lora_targets]
    if s.mode == "full":
        weights, trainable, train_bytes = shape.params * w, shape.params, w
    elif s.mode in ("lora", "qlora"):
        trainable = sum(s.lora_r * (i + o) * n for _, i, o, n in targets)
        if s.mode == "lora":
            weights, train_bytes = shape.params * w + trainable * 4, 4
        else:
            quantized = shape.linear_params
            train_bytes = w  # adapters in the compute dtype
            weights = (quantized * NF4_BYTES[s.double_quant] + (shape.params - quantized) * w
                       + trainable * train_bytes)
    else:
        raise InstructkitError(f"unknown mode {s.mode!r}.", fix="use full, lora or qlora.")
    grads = trainable * train_bytes
    optimizer = trainable * (12 if s.deepspeed and train_bytes == 2 else 2 * train_bytes)

    n = max(s.devices, 1)
    host = 0.0
    if s.reference:  # DPO's frozen reference: the same weights once more, in the load dtype
        weights += shape.params * w
    layer_weights = weights / max(shape.layers, 1)
    if s.strategy in ("zero2", "zero3", "zero3_offload"):
        grads, optimizer = grads / n, optimizer / n
    if s.strategy == "zero3":
        weights = weights / n + layer_weights  # one layer gathered at a time
    if s.strategy == "zero3_offload":
        host = weights / n + optimizer + grads  # weights, optimizer state (and its fp32 gradients) in host RAM
        weights, optimizer, grads = layer_weights, 0.0, 0.0

    tokens = s.batch * s.seq * s.sequences
    act_bytes = w
    per_token_layer = 6 * shape.hidden + 4 * shape.kv_dim + 4 * shape.intermediate
    if s.checkpointing:
        activations = tokens * (shape.hidden * shape.layers + per_token_layer) * act_bytes
    else:
        activations = tokens * per_token_layer * shape.layers * act_bytes
    activations += 2 * tokens * min(shape.vocab, LOGIT_TILE) * 4  # a tile of fp32 logits and its gradient
    overhead = GPU_OVERHEAD if s.gpu else CPU_OVERHEAD
    total = weights + grads + optimizer + activations + overhead
    return {"weights": weights, "gradients": grads, "optimizer": optimizer, "activations": activations,
            "overhead": overhead, "total": total, "host_offload": host, "trainable_params": trainable,
            "params": shape.params}


# --- reading the configs ------------------------------------------------------------------------------------------

def parse_size(text: str) -> float:
    """'24GB', '24G', '80 GiB', '24' (GB) -> bytes."""
    m = re.fullmatch(r"\s*([\d.]+)\s*(gib|gb|g|mib|mb|m)?\s*", str(text).lower())
    if not m:
        raise InstructkitError(f"cannot read the memory size {text!r}.", fix="write it like 24GB or 80GiB.")
    scale = {"gib": 2**30, "mib": 2**20, "mb": 1e6, "m": 1e6}.get(m.group(2) or "gb", GB)
    return float(m.group(1)) * scale


# The published config.json of the models the per-model configs name (their shape only), for when the hub is out of
# reach: huggingface.co/<name>/blob/main/config.json.
PUBLISHED_SHAPES = {
    "Qwen/Qwen2.5-7B": ("qwen2", dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                      num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                                      tie_word_embeddings=False)),
    "meta-llama/Llama-3.1-8B": ("llama", dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                              num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                              tie_word_embeddings=False)),
    "mistralai/Mistral-7B-v0.1": ("mistral", dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                                                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                                  tie_word_embeddings=False)),
    "HuggingFaceTB/SmolLM2-1.7B": ("llama", dict(vocab_size=49152, hidden_size=2048, intermediate_size=8192,
                                                 num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                                                 tie_word_embeddings=True)),
}
# The per-model DPO configs start from that model's SFT output (outputs/<model>/sft_full): the same shape
SFT_OUTPUT = re.compile(r"^outputs/(?P<model>[^/]+)/sft_\w+$")
MODEL_FOLDERS = {"qwen2.5-7b": "Qwen/Qwen2.5-7B", "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
                 "mistral-7b": "mistralai/Mistral-7B-v0.1", "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B"}


def published_config(name: str):
    """The published shape of `name` (or of the model a shipped SFT output folder name stands for), or None."""
    from transformers import AutoConfig

    match = SFT_OUTPUT.match(str(name))
    name = MODEL_FOLDERS.get(match["model"], name) if match else name
    if name not in PUBLISHED_SHAPES:
        return None
    model_type, values = PUBLISHED_SHAPES[name]
    return AutoConfig.for_model(model_type, **values)


def model_config(name: str):
    """The model's config: 'embedded' (the current preset's shape), a local folder, a cached hub model, or the
    published shape of a model a per-model config names."""
    from transformers import AutoConfig, LlamaConfig

    if name in (None, "", "embedded"):
        spec = current_spec()
        return LlamaConfig(vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
                           intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_hidden_layers,
                           num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
                           max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=False)
    try:
        return AutoConfig.from_pretrained(str(Path(name).expanduser()) if Path(name).expanduser().exists() else name)
    except (OSError, ValueError) as err:
        if published_config(name) is not None:
            return published_config(name)
        raise InstructkitError(f"cannot read the config of model {name!r}: {str(err).splitlines()[0][:200]}",
                               fix="point model_name_or_path at a local model folder (only its config.json is "
                                   "read), or run once with network access so the hub config is cached.") from None


def launch_setup(path: str | None) -> dict:
    """Strategy, device count and DeepSpeed from an accelerate config file."""
    import yaml

    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise InstructkitError(f"accelerate config {path} does not exist.", fix="pass a file from accelerate_configs/.")
    cfg = yaml.safe_load(p.read_text()) or {}
    kind = str(cfg.get("distributed_type", "NO")).upper()
    out = {"devices": int(cfg.get("num_processes", 1) or 1) * int(cfg.get("num_machines", 1) or 1)}
    if kind == "DEEPSPEED":
        ds = cfg.get("deepspeed_config") or {}
        stage = int(ds.get("zero_stage", 2))
        offload = str(ds.get("offload_param_device", "none")).lower() not in ("none", "null")
        out.update(deepspeed=True, strategy="zero3_offload" if stage == 3 and offload else "zero3" if stage == 3
                   else "zero2" if stage == 2 else "ddp")
    elif kind == "FSDP":
        out["strategy"] = "zero3_offload" if (cfg.get("fsdp_config") or {}).get("fsdp_offload_params") else "zero3"
    else:
        out["strategy"] = "ddp" if out["devices"] > 1 else "single"
    return out


def recipe_config(path: str) -> dict:
    """The recipe YAML, checked with the recipes' own key and value checks (DPO's keys when it names `beta`)."""
    from trl import DPOConfig, ModelConfig, SFTConfig

    return load_checked_config(path, lambda cfg: (InstructkitArguments, DPOConfig if "beta" in cfg else SFTConfig,
                                                  ModelConfig))


def setup_from_config(cfg: dict, mode: str | None, gpu: bool) -> Setup:
    """Recipe keys (TRL's defaults where a key is absent): the mode, batch, length, checkpointing, LoRA, dtype."""
    if mode is None:
        mode = ("qlora" if cfg.get("load_in_4bit") else
                "lora" if cfg.get("use_peft", any(k.startswith("lora_") for k in cfg)) else "full")
    dtype = cfg.get("dtype")
    dtype_bytes = 4 if dtype == "float32" or (dtype in (None, "auto") and not gpu) else 2
    targets = cfg.get("lora_target_modules") or []
    targets = () if targets in ("all-linear", ["all-linear"]) else tuple([targets] if isinstance(targets, str) else targets)
    checkpointing = cfg.get("activation_checkpointing", cfg.get("gradient_checkpointing", True))  # TRL: True
    preference = "beta" in cfg
    return Setup(mode=mode, gpu=gpu, dtype_bytes=dtype_bytes, batch=int(cfg.get("per_device_train_batch_size", 8)),
                 seq=int(cfg.get("max_length") or 1024), checkpointing=bool(checkpointing),
                 lora_r=int(cfg.get("lora_r", 16)), lora_targets=targets,
                 double_quant=bool(cfg.get("use_bnb_nested_quant", False)),
                 reference=preference and mode == "full" and not cfg.get("precompute_ref_log_probs"),
                 sequences=2 if preference else 1)


def estimate(config_path: str, launch: str | None = None, gpus: int | None = None, gpu_memory: str | None = None,
             mode: str | None = None) -> dict:
    """Every strategy's breakdown (or the launch config's), and whether each fits the device memory. Without
    hardware given, a config's `# Meant for:` hardware (per-model configs) is what it is checked against."""
    cfg = recipe_config(config_path)
    intended = intended_hardware(Path(config_path).read_text())
    if intended and not (launch or gpus or gpu_memory):
        launch = str(launch_configs_dir() / intended.launch_config)
        gpus, gpu_memory = intended.gpus, f"{intended.gb}GB"
    launched = launch_setup(launch)
    gpu = bool(launch or gpus or gpu_memory)
    base = setup_from_config(cfg, mode, gpu)
    devices = gpus or launched.get("devices", 1)
    shape = shape_from_config(model_config(cfg.get("model_name_or_path", "embedded")))
    if gpu:
        limit = parse_size(gpu_memory) if gpu_memory else None
        strategies = [launched["strategy"]] if launch else (["single"] if devices == 1 else list(STRATEGIES))
    else:
        import psutil

        limit, devices, strategies = psutil.virtual_memory().total, 1, ["single"]
    rows = []
    for strategy in strategies:
        setup = Setup(**{**asdict(base), "strategy": strategy, "devices": devices,
                         "deepspeed": launched.get("deepspeed", strategy.startswith("zero"))})
        b = breakdown(shape, setup)
        rows.append({"strategy": strategy, **b, "fits": None if limit is None else b["total"] <= limit})
    return {"model": cfg.get("model_name_or_path", "embedded"), "setup": asdict(base), "devices": devices,
            "device": "gpu" if gpu else "cpu", "limit_bytes": limit, "shape": asdict(shape), "rows": rows,
            "intended": str(intended) if intended and launch and launch.endswith(intended.launch_config) else None}


def format_report(r: dict) -> str:
    s = r["setup"]
    gb = lambda x: f"{x / GB:.2f}"  # noqa: E731
    dtype = {4: "fp32", 2: "bf16"}[s["dtype_bytes"]]
    head = (f"{r['model']}: {r['shape']['params'] / 1e6:,.1f} M parameters, {s['mode']} "
            f"({r['rows'][0]['trainable_params'] / 1e6:,.2f} M trainable), {dtype}, batch {s['batch']} x "
            f"{s['seq']} tokens, activation checkpointing {'on' if s['checkpointing'] else 'off'}; "
            + (f"{r['devices']} GPU(s)" if r["device"] == "gpu" else "this machine's CPU (one process)"))
    lines = [head, "", "| strategy | weights | gradients | optimizer | activations | overhead | total / device (GB) "
                       "| host RAM (offload) | fits |", "|---|---|---|---|---|---|---|---|---|"]
    limit = r["limit_bytes"]
    for row in r["rows"]:
        fits = "?" if row["fits"] is None else ("yes" if row["fits"] else "**no**")
        lines.append(f"| {STRATEGY_NAMES[row['strategy']]} | {gb(row['weights'])} | {gb(row['gradients'])} | "
                     f"{gb(row['optimizer'])} | {gb(row['activations'])} | {gb(row['overhead'])} | "
                     f"**{gb(row['total'])}** | {gb(row['host_offload']) if row['host_offload'] else '-'} | {fits} |")
    lines.append("")
    if r.get("intended"):
        lines.append(f"meant for: {r['intended']} (the config's 'Meant for' line; --gpus / --gpu-memory check another)")
    lines.append(f"limit: {gb(limit)} GB per device" if limit else "no --gpu-memory given: fit not checked")
    if limit and not any(row["fits"] for row in r["rows"]):
        lines.append("nothing fits: try QLoRA (--mode qlora), activation_checkpointing: true, a smaller "
                     "per_device_train_batch_size or max_length, or more devices")
    return "\n".join(lines)


def shipped_table() -> str:
    """Markdown: every shipped per-model config against the hardware it is meant for (docs/launching.md, README)."""
    lines = ["| model | config | trains | meant for | weights | activations | total / GPU (GB) | fits |",
             "|---|---|---|---|---|---|---|---|"]
    configs = sorted((p.parent.name, p.stem, p) for name in recipe_names() for p in recipe_configs(name)
                     if p.parent.name != "configs")
    for model, recipe, path in configs:
        r = estimate(str(path))
        row = r["rows"][0]
        trains = r["setup"]["mode"] + (" + reference" if r["setup"]["reference"] else "")
        lines.append(f"| {model} | `{recipe}.yaml` | {trains} | {r['intended']} | {row['weights'] / GB:.1f} | "
                     f"{row['activations'] / GB:.1f} | **{row['total'] / GB:.1f}** | "
                     f"{'yes' if row['fits'] else '**no**'} |")
    return "\n".join(lines)
