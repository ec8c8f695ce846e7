"""Model folders and names: local path or hub name, safetensors only, no remote code unless allowed."""

from __future__ import annotations

import json
from pathlib import Path

from instructkit.embedded import ensure_embedded
from instructkit.errors import InstructkitError
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
        return str(ensure_embedded().model_dir)
    check_local_path(name, key)
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def from_pretrained(loader, name: str, what: str, **kwargs):
    try:
        return loader(name, **kwargs)
    except (OSError, ValueError) as err:  # missing/unreachable files; unknown model_type or revision
        first = str(err).strip().splitlines()[0][:300]
        raise InstructkitError(f"could not load the {what} {name!r}: {first}",
                               fix="check the name or path (an SFT output folder exists only after its recipe ran, "
                                   "e.g. accelerate launch recipes/sft_full.py); without network access "
                                   "(HF_HUB_OFFLINE=1) only local folders and already cached hub models load.") from None


def torch_dtype(name: str):
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def is_adapter_dir(name: str) -> bool:
    """A PEFT adapter folder (e.g. the output of sft_lora / sft_qlora), not a full model."""
    return (Path(name) / "adapter_config.json").is_file()
