"""`instructkit cp RECIPE DEST [--config MODEL]`: a copy of a recipe the user then owns (as torchtune's `tune cp`).

A copy is the recipe script, its default config at `configs/<recipe>.yaml` next to it (where the script's
DEFAULT_CONFIG looks) and the launch configs it needs under `accelerate_configs/`, so `accelerate launch
DEST/<recipe>.py` runs from DEST with no checkout around: the script imports only the installed `instructkit`, and
its loop (parse, data, model, trainer, train, save) is in the copy, to change. `--config qwen2.5-7b` makes a
per-model config (configs/qwen2.5-7b/<recipe>.yaml, published hyperparameters) the copy's default, with the launch
config it is meant for. The commands in the copied comments are rewritten to the copy's layout.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from instructkit import catalog
from instructkit.errors import InstructkitError

ALWAYS_COPIED = ("single_gpu.yaml",)  # one process, GPU or CPU: runs anywhere
_LAUNCH_REF = re.compile(r"accelerate_configs/([\w.-]+\.(?:yaml|sh))")
# Config keys naming inputs that must exist where the recipe is launched
_INPUT_KEYS = ("model_name_or_path", "tokenizer_name_or_path", "dataset_name", "chat_template", "benchmark_data_dir")
_LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".jinja")
_RECIPE_REF = re.compile(r"(?<=\s)recipes/(\w+\.py)")  # "accelerate launch [...] recipes/x.py" -> "... x.py"


def register(sub) -> None:
    parser = sub.add_parser("cp", help="copy a recipe, its default config and launch configs into a folder to own")
    parser.add_argument("recipe", help="recipe name (instructkit list shows them), e.g. sft_qlora")
    parser.add_argument("dest", help="folder to copy into (created if needed)")
    parser.add_argument("--launch_configs", nargs="+", default=[], metavar="NAME",
                        help="more launch configs to copy besides single_gpu (e.g. ddp fsdp_qlora), or 'all'")
    parser.add_argument("--config", dest="config_choice", metavar="MODEL",
                        help="a shipped config to make the copy's default: a model folder (e.g. qwen2.5-7b, "
                             "llama-3.1-8b, mistral-7b, smollm2-1.7b) or a variant (e.g. sft_full_replay)")
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist in the folder")
    parser.set_defaults(func=run)


def run(args) -> None:
    dest = Path(args.dest).expanduser()
    for path in copy_recipe(args.recipe, dest, args.launch_configs, args.force, args.config_choice):
        print(f"copied {path}")
    config = dest / "configs" / f"{args.recipe}.yaml"
    for item in missing_inputs(config, dest) if config.is_file() else []:
        print(f"note: {config} reads {item}, which does not exist in {dest} yet (relative paths are read from where "
              "you launch; run the recipe that writes it there first, or edit the config)")
    hardware = catalog.intended_hardware(config.read_text()) if config.is_file() else None
    launch = f"--config_file accelerate_configs/{hardware.launch_config} " if hardware else ""
    launch += f"--num_processes {hardware.gpus} " if hardware and hardware.gpus > 1 else ""
    print(f"\nrun it:  cd {args.dest} && accelerate launch {launch}{args.recipe}.py"
          + (f"    # settings: configs/{args.recipe}.yaml, or --key value" if config.is_file() else "")
          + (f"\nmeant for {hardware}: instructkit estimate --config configs/{args.recipe}.yaml" if hardware else ""))


def for_copy(text: str, moved: tuple[str, str] | None = None) -> str:
    """Commands in comments/docstrings, rewritten from the checkout's layout to the copy's (`moved`: the copied
    config's path under recipes/ and in the copy, e.g. configs/qwen2.5-7b/sft_qlora.yaml -> configs/sft_qlora.yaml)."""
    text = _RECIPE_REF.sub(r"\1", text.replace("recipes/configs/", "configs/"))
    return text.replace(*moved) if moved else text


def files_to_copy(recipe: str, launch_configs=(), config_choice: str | None = None) -> dict[Path, str]:
    """{source file: path relative to DEST} for `recipe`, its config (the default one, or `config_choice`: see
    `catalog.config_choices`) as configs/<recipe>.yaml, and its launch configs."""
    script = catalog.recipe_file(recipe)
    files = {script: script.name}
    config = catalog.config_file(recipe, config_choice) if config_choice else \
        catalog.recipes_dir() / "configs" / f"{recipe}.yaml"
    if config.is_file():
        files[config] = f"configs/{recipe}.yaml"
    named = {m for src in list(files) for m in _LAUNCH_REF.findall(src.read_text())}
    available = catalog.launch_configs()
    wanted = list(ALWAYS_COPIED) + sorted(named)
    for name in launch_configs:
        wanted += sorted(available) if name == "all" else [name if Path(name).suffix else f"{name}.yaml"]
    for name in dict.fromkeys(wanted):
        if name not in available:
            raise InstructkitError(f"there is no launch config {name!r} in {catalog.launch_configs_dir()}.",
                                   fix=f"use one of: {', '.join(sorted(available))}, or all.")
        files[available[name]] = f"accelerate_configs/{name}"
    return files


def copy_recipe(recipe: str, dest: str | Path, launch_configs=(), force: bool = False,
                config_choice: str | None = None) -> list[Path]:
    """Copy `recipe` into `dest` (created if needed); never overwrites a file unless `force`. Returns the copies."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InstructkitError(f"{dest} is a file, not a folder.", fix="pass a folder to copy the recipe into.")
    files = files_to_copy(recipe, launch_configs, config_choice)
    moved = next(((str(src.relative_to(catalog.recipes_dir())), rel) for src, rel in files.items()
                  if rel.startswith("configs/")), None)
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
            target.write_text(for_copy(src.read_text(), moved))
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
        local = isinstance(value, str) and (value.startswith(("outputs/", ".", "/", "~")) or value.count("/") > 1
                                            or Path(value).suffix in _LOCAL_SUFFIXES)  # not a hub name (org/name)
        if local and not (dest / Path(value).expanduser()).exists():
            found.append(f"{key}: {value}")
    return found
