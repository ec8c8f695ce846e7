"""`instructkit list`: recipes x configs x launch configs, with the command that runs each; the per-model configs
(published hyperparameters) with the hardware each is meant for."""

from __future__ import annotations

import os
from pathlib import Path

from instructkit.catalog import intended_hardware, launch_configs, recipe_configs, recipe_names, recipes_dir


def register(sub) -> None:
    sub.add_parser("list", help="recipes x configs x launch configs").set_defaults(func=run)


def shown(path: Path) -> str:
    """`path` relative to the current directory when it is below it (a checkout), else absolute (an install)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def run(_args) -> None:
    recipes = recipes_dir()
    per_model = []
    for name in recipe_names():
        script = shown(recipes / f"{name}.py")
        configs = recipe_configs(name)
        for config in configs:
            if config.parent.name != "configs":
                per_model.append((config.parent.name, name, script, config))
                continue
            print(f"{name:<10} {os.path.relpath(config, recipes)!s:<34} "
                  f"accelerate launch {script} --config {shown(config)}")
        if not configs:
            print(f"{name:<10} {'(arguments only)':<34} python {script} --help")
    if per_model:
        print("\nper-model configs (published hyperparameters, each value with its source; copy one: "
              "instructkit cp <recipe> <folder> --config <model>):")
    for model, name, script, config in sorted(per_model):
        hardware = intended_hardware(config.read_text())
        launch = launch_configs().get(hardware.launch_config) if hardware else None
        prefix = f"--config_file {shown(launch)} " if launch else ""
        prefix += f"--num_processes {hardware.gpus} " if hardware and hardware.gpus > 1 else ""
        print(f"  {model:<13} {name:<10} {str(hardware or '-'):<44} "
              f"accelerate launch {prefix}{script} --config {shown(config)}")
    print("\nlaunch configs (any recipe; add --num_processes N for several GPUs):")
    for name, path in launch_configs().items():
        command = f"sbatch {shown(path)} <recipe>.py" if path.suffix == ".sh" else \
            f"accelerate launch --config_file {shown(path)} <recipe>.py"
        print(f"  {name:<30} {command}")
    print("\nown a copy: instructkit cp <recipe> <folder> [--config <model>]   (then: cd <folder> && accelerate launch "
          "<recipe>.py)")
