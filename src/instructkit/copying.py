"""Where the shipped recipes are, and `instructkit cp`: a copy of a recipe the user then owns (as `tune cp`).

A copy is the recipe script, its default config at `configs/<recipe>.yaml` next to it (where the script's
DEFAULT_CONFIG looks) and the launch configs it needs under `accelerate_configs/`, so `accelerate launch
DEST/<recipe>.py` runs from DEST with no checkout around: the script imports only the installed `instructkit`.
The commands in the copied comments are rewritten to the copy's layout.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from instructkit.errors import InstructkitError

REPO_ROOT = Path(__file__).resolve().parents[2]
ALWAYS_COPIED = ("single_gpu.yaml",)  # one process, GPU or CPU: runs anywhere
_LAUNCH_REF = re.compile(r"accelerate_configs/([\w.-]+\.(?:yaml|sh))")
# Config keys naming inputs that must exist where the recipe is launched
_INPUT_KEYS = ("model_name_or_path", "tokenizer_name_or_path", "dataset_name", "chat_template", "benchmark_data_dir")


def recipes_dir() -> Path:
    """The recipes next to the source checkout (editable install), or in the current directory."""
    for candidate in (REPO_ROOT / "recipes", Path.cwd() / "recipes"):
        if candidate.is_dir():
            return candidate
    raise InstructkitError("no recipes/ folder found next to the instructkit sources or in the current directory.",
                           fix="run from a checkout of instructkit (pip install -e .).")


def launch_configs_dir() -> Path:
    return recipes_dir().parent / "accelerate_configs"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.py"))


def for_copy(text: str) -> str:
    """Commands in comments/docstrings, rewritten from the checkout's layout to the copy's."""
    return text.replace("recipes/configs/", "configs/").replace("accelerate launch recipes/", "accelerate launch ")


def files_to_copy(recipe: str, launch_configs=()) -> dict[Path, str]:
    """{source file: path relative to DEST} for `recipe`, its default config and its launch configs."""
    from instructkit.config import close_match

    recipes = recipes_dir()
    script = recipes / f"{recipe}.py"
    if not script.is_file():
        match = close_match(recipe, recipe_names())
        raise InstructkitError(f"there is no recipe {recipe!r}" + (f" — did you mean {match!r}?" if match else "."),
                               fix=f"use one of: {', '.join(recipe_names())} (instructkit list shows them).")
    files = {script: script.name}
    config = recipes / "configs" / f"{recipe}.yaml"
    if config.is_file():
        files[config] = f"configs/{config.name}"
    named = {m for src in list(files) for m in _LAUNCH_REF.findall(src.read_text())}
    available = {p.name: p for p in launch_configs_dir().glob("*") if p.suffix in (".yaml", ".sh")}
    wanted = list(ALWAYS_COPIED) + sorted(named)
    for name in launch_configs:
        wanted += sorted(available) if name == "all" else [name if Path(name).suffix else f"{name}.yaml"]
    for name in dict.fromkeys(wanted):
        if name not in available:
            raise InstructkitError(f"there is no launch config {name!r} in {launch_configs_dir()}.",
                                   fix=f"use one of: {', '.join(sorted(available))}, or all.")
        files[available[name]] = f"accelerate_configs/{name}"
    return files


def copy_recipe(recipe: str, dest: str | Path, launch_configs=(), force: bool = False) -> list[Path]:
    """Copy `recipe` into `dest` (created if needed); never overwrites a file unless `force`. Returns the copies."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InstructkitError(f"{dest} is a file, not a folder.", fix="pass a folder to copy the recipe into.")
    files = files_to_copy(recipe, launch_configs)
    existing = [dest / rel for rel in files.values() if (dest / rel).exists()]
    if existing and not force:
        raise InstructkitError(f"{', '.join(map(str, existing))} already exist{'s' if len(existing) == 1 else ''}: "
                               "a copy is yours, so it is not overwritten.",
                               fix="copy into another folder, or pass --force to overwrite.")
    copies = []
    for src, rel in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix in (".py", ".yaml", ".sh"):
            target.write_text(for_copy(src.read_text()))
            shutil.copymode(src, target)
        else:
            shutil.copy2(src, target)
        copies.append(target)
    return copies


def missing_inputs(config_file: Path, dest: Path) -> list[str]:
    """`key: value` of inputs a copied config names by path that do not exist under `dest` (e.g. dpo's start,
    outputs/sft_full): relative paths resolve against the folder the recipe is launched from."""
    import yaml

    config = yaml.safe_load(config_file.read_text()) or {}
    found = []
    for key in _INPUT_KEYS:
        value = config.get(key)
        if isinstance(value, str) and ("/" in value or Path(value).suffix) \
                and not (dest / Path(value).expanduser()).exists():
            found.append(f"{key}: {value}")
    return found
