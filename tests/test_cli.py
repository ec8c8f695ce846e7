"""The `instructkit` console script."""

import json
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).with_name("instructkit"))


def test_list_shows_every_recipe_with_its_command():
    out = subprocess.run([CLI, "list"], capture_output=True, text=True, check=True).stdout
    for recipe in ("sft_full", "sft_lora", "sft_qlora"):
        assert f"accelerate launch recipes/{recipe}.py --config recipes/configs/{recipe}.yaml" in out
    assert "accelerate_configs/single_gpu.yaml" in out


def test_embedded_reports_the_cached_build(embedded):
    out = subprocess.run([CLI, "embedded", "--json"], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["model_dir"] == str(embedded.model_dir)
    assert info["weights_sha256"] == embedded.info["weights_sha256"]
