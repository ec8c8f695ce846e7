"""The resolved config of a run: its three argument objects in their final form, read and never changed.

A recipe parses its config once (`parsing.parse_args`), then resolves what depends on the machine, the data and the
tokenizer into a new `RecipeConfig` (`RecipeConfig.replace`); what it hands TRL, and what `config.yaml` records, is
that final form. `as_dict` flattens it like the YAML a user writes, every value included, credentials redacted.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from pathlib import Path
from typing import Any

import yaml

from instructkit.config.machine import compute_dtype, cpu_cores
from instructkit.distributed import sharding
from instructkit.errors import InstructkitError
from instructkit.log import log
from instructkit.paths import write_atomic

REDACTED = "<redacted>"


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """instructkit's arguments (`script`), TRL's trainer config (`training`: SFTConfig or DPOConfig) and model
    config (`model`: ModelConfig), plus the recipe that runs them."""

    script: Any
    training: Any
    model: Any
    recipe: str = "recipe"

    def replace(self, script: dict | None = None, training: dict | None = None, model: dict | None = None):
        """A new RecipeConfig with these fields changed in copies of the argument objects (this one is untouched).

        Copies take the values as they are: `__post_init__` validation ran when the config was parsed.
        """
        parts = {}
        for name, changes in (("script", script), ("training", training), ("model", model)):
            part = getattr(self, name)
            if changes:
                part = copy.copy(part)
                for key, value in changes.items():
                    setattr(part, key, value)
            parts[name] = part
        return dataclasses.replace(self, **parts)

    def as_dict(self) -> dict[str, Any]:
        return resolved_config(self.script, self.training, self.model)

    def write(self, path) -> Path:
        """Write `as_dict()` as YAML to `path`, atomically (a kill never leaves half a file)."""
        return write_yaml(path, self.as_dict())


def resolve_model(config: RecipeConfig) -> RecipeConfig:
    """The model keys in their final form, from the machine and the launch:
    * `dtype`: 'auto' becomes bfloat16 where the GPU supports it, else float32 (also the 4-bit compute dtype);
    * under ZeRO-3 / FSDP, 4-bit weights are stored in that dtype (`bnb_4bit_quant_storage`), so the sharding sees
      one dtype across the model (uint8 storage fails there); except FSDP in bf16/fp16, where 16-bit storage hits
      bitsandbytes #1945 (wrong outputs, `distributed.check_launch` refuses it): uint8 there, which FSDP2 leaves
      replicated (accelerate keeps frozen non-float weights out of the shards);
    * `lora_target_modules`: unset or [all-linear] means every linear layer ('all-linear'); TRL turns a one-item list
      into a string, which PEFT would read as a full-name regex, so it is a list again.
    """

    model = config.model
    changes = {"dtype": compute_dtype(model.dtype)}
    if model.load_in_4bit and sharding() is not None and not model.bnb_4bit_quant_storage:
        half = sharding() == "fsdp" and changes["dtype"] in ("bfloat16", "float16")
        changes["bnb_4bit_quant_storage"] = "uint8" if half else changes["dtype"]
    targets = model.lora_target_modules
    if model.use_peft and targets in (None, [], ["all-linear"]):
        changes["lora_target_modules"] = "all-linear"
    elif model.use_peft and isinstance(targets, str) and targets != "all-linear":
        changes["lora_target_modules"] = [targets]
    return config.replace(model=changes)


def resolve_chat_template(config: RecipeConfig) -> RecipeConfig:
    """TRL's `chat_template_path` (SFTConfig) read as instructkit's `chat_template`, which loads it once (TRL would
    otherwise put it on the tokenizer a second time, over the training variant `chat_templates` may have chosen)."""
    path = getattr(config.training, "chat_template_path", None)
    if not path:
        return config
    if config.script.chat_template and config.script.chat_template != path:
        raise InstructkitError("chat_template and chat_template_path are both set, to different templates.",
                               fix="keep one (chat_template takes a bundled name, a .jinja path or the template "
                                   "itself; chat_template_path, TRL's key, a file or a tokenizer folder).")
    return config.replace(script={"chat_template": path}, training={"chat_template_path": None})


# Below this many training rows per worker, starting worker processes (a fork each, plus the pickled tokenizer) costs
# more than it saves; a conservative floor, not yet measured per size in benchmarks/ (issue #22).
ROWS_PER_DATA_PROCESS = 5_000


def resolve_data_processes(config: RecipeConfig, rows: int) -> RecipeConfig:
    """`dataset_num_proc` left unset: the usable cores, capped by the rows (`ROWS_PER_DATA_PROCESS` each), for TRL's
    tokenization and instructkit's masks. A value the user set is kept."""
    if config.training.dataset_num_proc is not None:
        return config
    procs = min(cpu_cores(), rows // ROWS_PER_DATA_PROCESS)
    if procs < 2:
        return config
    log(f"data: tokenized in {procs} processes (dataset_num_proc unset: {cpu_cores()} cores, {rows:,} training rows)")
    return config.replace(training={"dataset_num_proc": procs})


def write_yaml(path, data: dict) -> Path:
    return write_atomic(path, yaml.safe_dump(data, sort_keys=True))


def resolved_config(*instances) -> dict[str, Any]:
    """All fields of the parsed dataclasses as one flat, YAML-safe dict (like the config file), secrets redacted.

    Saved next to a run's outputs so it can be reproduced; hence every value, not just the ones the user set.
    """
    resolved = {}
    for instance in instances:
        for field in dataclasses.fields(instance):
            if not field.name.startswith("_"):
                resolved[field.name] = _plain(field.name, getattr(instance, field.name))
    return resolved


def is_secret_key(name) -> bool:
    """Names whose values are credentials (hub_token, token, api_key, ...); eos_token/pad_token are not."""
    name = str(name).lower()
    return name in {"token", "hub_token", "hf_token", "api_key", "password", "secret"} or name.endswith(
        ("_api_key", "_secret", "_password", "_access_token", "_auth_token"))


def _plain(name: str, value):
    """`value` as str/int/float/bool/None/list/dict; a credential (see `is_secret_key`) is redacted."""
    if is_secret_key(name) and isinstance(value, str):
        return REDACTED
    if isinstance(value, enum.Enum):  # before str: transformers' enums subclass str, which yaml.safe_dump rejects
        return _plain(name, value.value)
    if value is None or type(value) in (bool, int, float, str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if not f.name.startswith("_")}
    if isinstance(value, dict):
        return {str(k): _plain(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(name, v) for v in value]
    return str(value)
