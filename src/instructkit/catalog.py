"""The recipes, their configs and the launch configs that ship with instructkit, found through the package.

They live at the repository's top level (`recipes/`, `accelerate_configs/`: the source of truth) and are installed as
the packages `instructkit.recipes` and `instructkit.accelerate_configs` (pyproject's package-dir), so a checkout, an
editable install and a wheel all find them the same way (as torchtune's `tune cp` finds its registry).

A recipe's configs: `configs/<recipe>.yaml` (the embedded default, the no-argument run), variants
`configs/<recipe>_<variant>.yaml`, and per-model configs `configs/<model>/<recipe>.yaml` with published
hyperparameters. A per-model config says on a comment line which hardware it is meant for
(`# Meant for: 8 GPUs x 80 GB (accelerate_configs/deepspeed_zero3.yaml)`), which `instructkit estimate` checks.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

from instructkit.errors import InstructkitError, close_match

RECIPES_PACKAGE = "instructkit.recipes"
LAUNCH_PACKAGE = "instructkit.accelerate_configs"
LAUNCH_SUFFIXES = (".yaml", ".sh")


def _package_dir(package: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        raise InstructkitError(f"the installed instructkit ships no {package} (an incomplete install).",
                               fix="reinstall it: pip install instructkit, or pip install -e . in a checkout.") from None


def recipes_dir() -> Path:
    return _package_dir(RECIPES_PACKAGE)


def launch_configs_dir() -> Path:
    return _package_dir(LAUNCH_PACKAGE)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.py") if not p.name.startswith("_"))


def recipe_file(name: str) -> Path:
    """The recipe script `name`; an unknown name names the recipes there are."""
    script = recipes_dir() / f"{name}.py"
    if name.startswith("_") or not script.is_file():
        match = close_match(name, recipe_names())
        raise InstructkitError(f"there is no recipe {name!r}" + (f" — did you mean {match!r}?" if match else "."),
                               fix=f"use one of: {', '.join(recipe_names())} (instructkit list shows them).")
    return script


def recipe_configs(name: str) -> list[Path]:
    """The shipped configs of recipe `name`: configs/<name>*.yaml, then the per-model configs/<model>/<name>.yaml."""
    configs = recipes_dir() / "configs"
    return sorted(configs.glob(f"{name}*.yaml")) + sorted(configs.glob(f"*/{name}.yaml"))


def config_choices(name: str) -> dict[str, Path]:
    """{what `instructkit cp --config` takes: path} for recipe `name`: a model folder ('qwen2.5-7b' for
    configs/qwen2.5-7b/<name>.yaml) or a variant's file name ('sft_full_replay' for configs/sft_full_replay.yaml)."""
    return {(p.parent.name if p.parent.name != "configs" else p.stem): p for p in recipe_configs(name)
            if p.stem != name or p.parent.name != "configs"}


def config_file(recipe: str, choice: str) -> Path:
    """The config `choice` (see `config_choices`) of `recipe`; an unknown one names those there are."""
    choices = config_choices(recipe)
    if choice not in choices:
        near = close_match(choice, choices)
        raise InstructkitError(f"recipe {recipe!r} ships no config {choice!r}" + (f" — did you mean {near!r}?" if near
                                                                                 else "."),
                               fix=f"use one of: {', '.join(choices) or '(none)'} (instructkit list shows them).")
    return choices[choice]


@dataclass(frozen=True)
class Hardware:
    """What a per-model config is meant for: its `# Meant for:` line."""

    gpus: int
    gb: int
    launch_config: str  # a file name in accelerate_configs/

    def __str__(self) -> str:
        return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''} x {self.gb} GB ({self.launch_config})"


_MEANT_FOR = re.compile(r"^# Meant for: (\d+) GPUs? x (\d+) GB \(accelerate_configs/([\w.-]+)\)$", re.M)


def intended_hardware(config_text: str) -> Hardware | None:
    """The hardware a config's `# Meant for:` comment line names, or None."""
    m = _MEANT_FOR.search(config_text)
    return Hardware(int(m[1]), int(m[2]), m[3]) if m else None


def launch_configs() -> dict[str, Path]:
    """{file name: path} of every launch config (accelerate YAMLs and the SLURM script)."""
    return {p.name: p for p in sorted(launch_configs_dir().iterdir()) if p.suffix in LAUNCH_SUFFIXES}
