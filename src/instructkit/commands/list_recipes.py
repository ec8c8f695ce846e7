"""`instructkit list`: recipes x configs x launch configs, with the command that runs each."""

from __future__ import annotations

import os
from pathlib import Path

from instructkit.catalog import launch_configs, recipe_configs, recipe_names, recipes_dir


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
    for name in recipe_names():
        script = shown(recipes / f"{name}.py")
        configs = recipe_configs(name)
        for config in configs:
            print(f"{name:<10} {os.path.relpath(config, recipes)!s:<34} "
                  f"accelerate launch {script} --config {shown(config)}")
        if not configs:
            print(f"{name:<10} {'(arguments only)':<34} python {script} --help")
    print("\nlaunch configs (any recipe; add --num_processes N for several GPUs):")
    for name, path in launch_configs().items():
        command = f"sbatch {shown(path)} <recipe>.py" if path.suffix == ".sh" else \
            f"accelerate launch --config_file {shown(path)} <recipe>.py"
        print(f"  {name:<30} {command}")
    print("\nown a copy: instructkit cp <recipe> <folder>   (then: cd <folder> && accelerate launch <recipe>.py)")
