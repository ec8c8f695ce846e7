"""The alignment-handbook's current recipes and TRL's documented `trl sft --config` example, run on instructkit's
recipes as a new user would: only the model, data and output paths changed (tests/configs/*.yaml, in their exact
shape, pointed at the embedded test model and hub-layout snapshots from tests/hub_data.py).

Attempt 1 is the recipe's first step, `parse_*_config` (what `accelerate launch` runs first): one error listing
every setting this machine cannot honour, each with its override, and the fix line holding them all. Attempt 2 adds
exactly those overrides and must run to a saved output. Step counts are kept small from the command line
(`--max_steps 2 --eval_max_samples 16`), as a user trying a recipe out would; nothing else changes.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, launch
from instructkit.config.machine import cpu_cores, cpu_flags
from instructkit.errors import InstructkitError

CONFIGS = ROOT / "tests" / "configs"
FEW_STEPS = ["--max_steps", "2", "--eval_max_samples", "16"]
NPROC = f"--dataset_num_proc {cpu_cores()}"
# config -> (recipe, the overrides its one error lists on this CPU-only, offline machine)
RUNS = {
    "zephyr_sft_full": ("sft_full", ["--attn_implementation sdpa", "--push_to_hub false", "--report_to none", NPROC]),
    "zephyr_sft_qlora": ("sft_qlora", ["--attn_implementation sdpa", "--push_to_hub false", NPROC]),
    "zephyr_dpo_full": ("dpo", ["--push_to_hub false", NPROC]),
    "zephyr_dpo_qlora": ("dpo", ["--attn_implementation sdpa", "--push_to_hub false", NPROC]),
    "smollm3_sft": ("sft_full", ["--attn_implementation sdpa", "--push_to_hub false", "--report_to none", NPROC,
                                 "--use_liger_kernel false"]),
    "cai_sft": ("sft_full", ["--attn_implementation sdpa", "--push_to_hub false", NPROC]),
    "trl_sft_example": ("sft_full", []),
}


def filled(name: str, model: Path, data: dict, out: Path, tmp: Path) -> Path:
    """tests/configs/<name>.yaml with its paths pointed here; nothing else changed."""
    text = (CONFIGS / f"{name}.yaml").read_text()
    text = text.replace("@MODEL@", str(model)).replace("@DATA@", str(next(iter(data.values())).parent))
    path = tmp / f"{name}.yaml"
    path.write_text(text.replace("@OUT@", str(out)))
    return path


def first_attempt(recipe: str, config: Path) -> InstructkitError | None:
    """The recipe's first step on the config, in-process: the error a launch would print, or None."""
    from instructkit.training.dpo import parse_dpo_config
    from instructkit.training.sft import parse_sft_config

    parse = parse_dpo_config if recipe == "dpo" else parse_sft_config
    try:
        parse(["--config", str(config)], check_output=False)
    except InstructkitError as err:
        return err
    return None


def listed_overrides(err: InstructkitError) -> list[str]:
    found = re.search(r"on this machine, add (.*) to the command line", err.fix or "")
    return shlex.split(found[1]) if found else []


def slower_here_overrides(err: InstructkitError | None) -> list[str]:
    """What the error's warnings advise on a CPU without native bf16 (bf16 / dtype bfloat16 run ~45x slower there):
    a user trying a recipe out adds these too."""
    found = re.findall(r"; (--\w+ \w+)(?: \(or auto\))? (?:trains|computes) in fp32", err.message if err else "")
    return [t for o in found for t in o.split()]


def current_form(err: InstructkitError) -> dict:
    """The mixture the error shows for the handbook's 2023 keys, as YAML."""
    return yaml.safe_load(re.search(r"its current form: (\{.*?\})(;|$)", err.message, flags=re.M)[1])


@pytest.mark.parametrize("name", RUNS)
def test_first_attempt_reports_every_setting_this_machine_cannot_honour_at_once(name, tmp_path, embedded, hub_data,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe, expected = RUNS[name]
    err = first_attempt(recipe, filled(name, embedded.model_dir, hub_data, tmp_path / "out", tmp_path))
    if not expected:
        assert err is None, err
        return
    assert err is not None and "Traceback" not in str(err)
    assert listed_overrides(err) == [t for o in expected for t in o.split()], str(err)
    for override in expected:  # each problem names its own override
        assert f"(override: {override})" in err.message
    if "bf16: true" in (CONFIGS / f"{name}.yaml").read_text() and not {"avx512_bf16", "amx_bf16"} & cpu_flags():
        assert "(warning: bf16: true on this CPU, which has no native bf16" in err.message  # slower, not an error
    if name == "zephyr_dpo_qlora":
        assert "'dataset_mixer' and 'dataset_splits'" in err.message
        assert current_form(err)["dataset_mixture"]["datasets"][0]["split"] == "train_prefs"
    else:  # no key problem: renamed keys are read as their current form
        assert "unknown key" not in err.message


def second_attempt_config(name: str, config: Path, err: InstructkitError | None) -> Path:
    """zephyr dpo qlora: the 2023 mixture keys replaced by the form the error shows (the one edit it asks for)."""
    if name != "zephyr_dpo_qlora":
        return config
    text = config.read_text()
    old = re.search(r"^dataset_mixer:\n.*?^dataset_splits:\n(?:- [^\n]*\n)+", text, flags=re.S | re.M)[0]
    edited = config.with_name(f"{name}.edited.yaml")
    edited.write_text(text.replace(old, yaml.safe_dump(current_form(err), sort_keys=False)))
    return edited


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_config_runs_with_only_paths_changed_and_the_listed_overrides(name, tmp_path, embedded, hub_data):
    recipe, _ = RUNS[name]
    out = tmp_path / "out"
    config = filled(name, embedded.model_dir, hub_data, out, tmp_path)
    err = first_attempt(recipe, config)
    attempts = 1 + (err is not None)
    extra = ["--output_dir", str(tmp_path / "test-sft")] if name == "trl_sft_example" else []
    slower = slower_here_overrides(err)
    proc = launch(recipe, "--config", str(second_attempt_config(name, config, err)),
                  *(listed_overrides(err) if err else []), *slower, *FEW_STEPS, *extra, quiet=True, cwd=tmp_path)
    assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr
    out = tmp_path / "test-sft" if extra else out
    metrics = json.loads((out / "metrics.json").read_text())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert metrics["train"]["train_loss"] > 0 and saved["max_steps"] == 2
    assert (out / "adapter_model.safetensors").is_file() or (out / "model.safetensors").is_file()
    print(f"{name}: {attempts} attempt(s)")
    check_saved(name, saved, metrics, proc.stdout, out, fp32="float32" in slower)


def check_saved(name: str, saved: dict, metrics: dict, stdout: str, out: Path, fp32: bool) -> None:
    """What each config's keys became: old names read as the new ones, the mixture and template as written."""
    if name == "trl_sft_example":
        assert metrics["data"]["format"] == "text" and saved["learning_rate"] == 0.0001
        assert "ignored: label (140 rows)" in stdout  # imdb's label column (train + test rows), with a note
        return
    ratio = 0.03 if name == "smollm3_sft" else 0.1
    assert f"warmup_ratio: {ratio} in" in stdout and saved["warmup_steps"] == ratio
    if name.startswith("zephyr_sft") or name == "cai_sft":
        assert saved["max_length"] == 2048 and saved["assistant_only_loss"]
        assert saved["dtype"] == ("float32" if fp32 else "bfloat16")  # torch_dtype read as dtype
        assert "zephyr_7b_beta's own" in stdout  # the inline template, trained through its marked variant
        assert "{%- generation -%}" in (out / "chat_template.jinja").read_text()
        assert metrics["data"]["rows"]["test"] == 1000 and saved["dataset_mixture_seed"] == 0
        assert metrics["data"]["mixture"][-1]["dropped_columns"] == ["prompt", "prompt_id"]  # ultrachat's test_sft
    if name.startswith("zephyr_dpo"):
        assert metrics["data"]["format"] == "mixture" and saved["beta"] == 0.01
        assert "prompts are longer than max_prompt_length=512" in stdout
    if name == "zephyr_dpo_full":
        assert saved["dtype"] == "float32" and metrics["data"]["rows"]["test"] == 2000  # torch_dtype: null -> auto
    if name == "smollm3_sft":
        assert saved["packing_strategy"] == "bfd" and saved["packing"] and saved["use_liger_kernel"] is False
        weights = {m["split"]: (m["rows"], m["used"]) for m in metrics["data"]["mixture"]}
        assert weights["magpie_ultra_no_think"] == (12, 6) and weights["multi_turn_reasoning_if_think"] == (12, 5)
