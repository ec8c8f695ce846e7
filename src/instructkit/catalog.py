"""The recipes, their configs and the launch configs that ship with instructkit, found through the package.

They live at the repository's top level (`recipes/`, `accelerate_configs/`: the source of truth) and are installed as
the packages `instructkit.recipes` and `instructkit.accelerate_configs` (pyproject's package-dir), so a checkout, an
editable install and a wheel all find them the same way (as torchtune's `tune cp` finds its registry).
"""

from __future__ import annotations

import importlib.resources
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
    """The shipped configs of recipe `name`: configs/<name>*.yaml."""
    return sorted((recipes_dir() / "configs").glob(f"{name}*.yaml"))


def launch_configs() -> dict[str, Path]:
    """{file name: path} of every launch config (accelerate YAMLs and the SLURM script)."""
    return {p.name: p for p in sorted(launch_configs_dir().iterdir()) if p.suffix in LAUNCH_SUFFIXES}
