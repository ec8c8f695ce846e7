"""The saved-weights check (training.run.check_saved_weights) blames only what it can know: an adapter that no
optimizer step with a non-zero learning rate could change is fine (a one-step run under warmup), and the ZeRO-3 /
FSDP fixes are named only under ZeRO-3 / FSDP."""

from types import SimpleNamespace

import pytest

from conftest import launch
from instructkit.errors import InstructkitError
from instructkit.training.callbacks import LearningSteps
from instructkit.training.run import check_saved_weights


def zero_adapter(out):
    import torch
    from safetensors.torch import save_file

    out.mkdir(exist_ok=True)
    save_file({"m.lora_A.weight": torch.ones(2, 4), "m.lora_B.weight": torch.zeros(4, 2)},
              out / "adapter_model.safetensors")


def test_an_unchanged_adapter_is_an_error_only_after_a_learning_step(tmp_path, capsys, monkeypatch):
    zero_adapter(tmp_path)
    check_saved_weights(tmp_path, stepped=0, steps=1, warmup_steps=0.05)
    assert "none of the 1 optimizer step(s) ran with a non-zero learning rate" in capsys.readouterr().out
    with pytest.raises(InstructkitError) as info:
        check_saved_weights(tmp_path, stepped=2, steps=2)
    assert "ZeRO-3" not in str(info.value) and "the adapter received no gradient" in str(info.value)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(InstructkitError, match="zero3_save_16bit_model: true"):
        check_saved_weights(tmp_path, stepped=2, steps=2)


def test_learning_steps_count_the_steps_that_had_a_learning_rate():
    steps = LearningSteps()
    for lr in (0.0, 1e-3, 5e-4):
        steps.on_optimizer_step(None, None, None, optimizer=SimpleNamespace(param_groups=[{"lr": lr}]))
    assert steps.count(SimpleNamespace(log_history=[])) == 2
    resumed = SimpleNamespace(log_history=[{"loss": 1.0, "learning_rate": 0.0, "step": 1},
                                           {"loss": 0.9, "learning_rate": 1e-3, "step": 2}, {"train_loss": 0.9}])
    assert LearningSteps().count(resumed) == 1  # before the resume, from the Trainer's log of each step's lr


@pytest.mark.slow
def test_a_one_step_lora_run_with_the_default_warmup_succeeds(tmp_path, embedded):
    """`--max_steps 1` under sft_lora's default warmup (warmup_steps 0.05): step 1 runs at learning rate 0."""
    out = tmp_path / "one"
    proc = launch("sft_lora", "--max_steps", "1", "--eval_exact_match", "false", "--output_dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "none of the 1 optimizer step(s) ran with a non-zero learning rate (warmup_steps 0.05" in proc.stdout
    assert (out / "adapter_model.safetensors").is_file() and (out / "metrics.json").is_file()
    # a run whose steps do change the adapter logs no such note: tests/test_distributed.py (FSDP2 sft_lora, warmup 0)
