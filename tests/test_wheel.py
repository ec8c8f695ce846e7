"""The wheel, as `pip install instructkit` users get it: built from this checkout, installed (not editable) into a
fresh venv, and used from an empty folder outside the checkout: list the recipes, copy one, train the copy, evaluate
what it trained."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT


def run(cmd, cwd, timeout=600, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{cmd}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding the built wheel; its other dependencies come from this venv's site-packages (a .pth line),
    so nothing is downloaded and the editable install of the checkout is not visible."""
    root = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
         str(ROOT)], cwd=root)
    (wheel,) = (root / "dist").glob("instructkit-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], cwd=root)
    return {"wheel": wheel, "bin": venv / "bin", "purelib": purelib}


def test_the_wheel_carries_the_recipes_configs_and_launch_configs(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for recipe in (ROOT / "recipes").glob("*.py"):
        assert f"instructkit/recipes/{recipe.name}" in names
    for config in (ROOT / "recipes" / "configs").rglob("*.yaml"):
        assert f"instructkit/recipes/{config.relative_to(ROOT / 'recipes')}" in names
    for launch in (ROOT / "accelerate_configs").glob("*"):
        if launch.suffix in (".yaml", ".sh"):
            assert f"instructkit/accelerate_configs/{launch.name}" in names
    assert any(n.startswith("instructkit/evaluation/fixture_data/") for n in names)
    assert any(n.startswith("instructkit/templates/") and n.endswith(".jinja") for n in names)


@pytest.mark.slow
def test_list_cp_train_and_eval_from_an_empty_folder(installed, tmp_path, embedded):
    bin_ = installed["bin"]
    cli, python = str(bin_ / "instructkit"), str(bin_ / "python")
    where = run([python, "-c", "import instructkit; print(instructkit.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(installed["purelib"])), f"imported {where}, not the installed wheel"

    listed = run([cli, "list"], cwd=tmp_path).stdout
    assert f"accelerate launch {installed['purelib'] / 'instructkit' / 'recipes' / 'sft_qlora.py'}" in listed
    assert "deepspeed_zero3.yaml" in listed

    run([cli, "cp", "sft_qlora", "proj"], cwd=tmp_path)
    proj = tmp_path / "proj"
    assert (proj / "sft_qlora.py").is_file() and (proj / "configs" / "sft_qlora.yaml").is_file()
    run([python, "-m", "accelerate.commands.launch", "--config_file", "accelerate_configs/single_gpu.yaml",
         "sft_qlora.py", "--max_steps", "2", "--per_device_train_batch_size", "4", "--eval_max_samples", "4"],
        cwd=proj)
    out = proj / "outputs" / "sft_qlora"
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text())["train"]["train_loss"] > 0

    run([cli, "eval", "--models", str(out), "--data_dir", "fixture", "--limit", "2", "--output_dir", "evaluated"],
        cwd=proj)
    report = json.loads(next((proj / "evaluated").glob("0-*/benchmarks.json")).read_text())
    assert report["protocol"]["adapter"] and report["results"]
