"""Offline by construction; the embedded default in its seconds-long `test` preset, built once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  TOKENIZERS_PARALLELISM="false", INSTRUCTKIT_EMBEDDED="test")
os.environ.setdefault("INSTRUCTKIT_CACHE", str(ROOT / ".cache" / "test-embedded"))


@pytest.fixture(scope="session")
def embedded():
    """The built test preset (model dir + data dir)."""
    from instructkit.embedded import ensure_embedded

    return ensure_embedded()


def launch(recipe: str, *args: str, cwd: Path = ROOT, timeout: int = 600, env: dict | None = None,
           quiet: bool = False):
    """`accelerate launch [-q] recipes/<recipe>.py ARGS` in a subprocess, as a user runs it."""
    accelerate = Path(sys.executable).with_name("accelerate")
    script = recipe if recipe.endswith(".py") else str(ROOT / "recipes" / f"{recipe}.py")
    cmd = [str(accelerate), "launch", *(["-q"] if quiet else []),
           "--config_file", str(ROOT / "accelerate_configs" / "single_gpu.yaml"), script, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
