"""Faults from outside a run: a full disk while saving (a real tmpfs, filled), a second run into the same output_dir
(refused, naming the first), a lock left by a killed run (taken over). SIGTERM: tests/test_training_resume.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import launch
from instructkit.errors import InstructkitError
from instructkit.training import faults, outputs

HOLD = ("import sys, time; from instructkit.training.faults import lock_output_dir; lock_output_dir(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(120)")


def hold_lock(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    first = hold_lock(out)
    try:
        holder = json.loads((out / faults.LOCK_FILE).read_text())
        assert holder["pid"] == first.pid and holder["host"] and holder["command"] == f"-c {out}"  # sys.argv
        with pytest.raises(InstructkitError) as info:
            faults.lock_output_dir(out)
        assert str(info.value).startswith(f"output_dir {out} is in use by another run: pid {first.pid} on "
                                          f"{holder['host']}, started {holder['started']}")
    finally:
        first.send_signal(signal.SIGKILL)  # no exit handler runs: the lock file stays, the kernel drops the lock
        first.wait()
    assert (out / faults.LOCK_FILE).is_file()
    path = faults.lock_output_dir(out)
    assert f"taking over the lock of a run that is no longer running (pid {first.pid} on" in capsys.readouterr().out
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert faults.lock_output_dir(out) == path  # this process holds it already
    faults._release(out.resolve(), created=False)
    assert not path.exists()


def test_a_lock_is_released_when_its_run_ends(tmp_path):
    out = tmp_path / "new"
    code = f"from instructkit.training.faults import lock_output_dir; lock_output_dir({str(out)!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not out.exists()  # nothing else was written: not even the folder is left


@pytest.mark.slow
def test_a_launched_run_refuses_an_output_dir_in_use(tmp_path, embedded):
    out = tmp_path / "out"
    first = hold_lock(out)
    try:
        proc = launch("sft_lora", "--output_dir", str(out), quiet=True)
    finally:
        first.kill()
        first.wait()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: output_dir {out} is in use by another run: pid "
                                                     f"{first.pid} on "), errors
    assert "data:" not in proc.stdout  # refused before the data was read


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_complete_one(tmp_path, monkeypatch):
    """ENOSPC injected where torch.save writes checkpoint-2 (the real thing: the tmpfs test below)."""
    import torch

    import test_errors

    real = torch.save

    def save(obj, f, *args, **kwargs):
        if "checkpoint-2" in str(f):
            (Path(f).parent / "partial").write_bytes(b"x" * 10)
            raise RuntimeError("unexpected pos 576 vs 534") from OSError(28, "No space left on device")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    trainer = test_errors.tiny_trainer(test_errors.Env(tmp_path), max_steps=3, save_strategy="steps", save_steps=1)
    faults.guard_checkpoint_saves(trainer)
    with pytest.raises(InstructkitError) as info:
        trainer.train()
    out = tmp_path / "out"
    assert [p.name for p in outputs.checkpoints(out)] == ["checkpoint-1"]  # the incomplete one is gone
    assert outputs.checkpoint_problem(out / "checkpoint-1") is None
    size = faults.human(sum(p.stat().st_size for p in (out / "checkpoint-1").rglob("*") if p.is_file()))
    assert f"a checkpoint needs about {size} (the size of checkpoint-1)" in str(info.value)
    assert f"{out / 'checkpoint-1'} is the last complete checkpoint: the same command resumes from it" in str(info.value)


def test_other_errors_while_saving_are_not_called_a_full_disk(tmp_path):
    assert not faults.disk_full(RuntimeError("CUDA error"), tmp_path, needed=1)
    assert not faults.disk_full(PermissionError(13, "Permission denied"), tmp_path, needed=1 << 60)
    assert faults.disk_full(RuntimeError("file write failed"), tmp_path, needed=1 << 60)  # torch's words, disk full
    assert faults.disk_full(ValueError("I/O error: No space left on device (os error 28)"), tmp_path, needed=1)


def test_a_final_save_cut_short_leaves_a_run_that_resumes(tmp_path):
    """A kill during the final save: its marker is there, so the run is not finished; what it wrote is removed."""
    from types import SimpleNamespace

    out = tmp_path / "out"
    ckpt = out / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    resolved = {"learning_rate": 1e-3}
    outputs.write_yaml(out / outputs.CONFIG_FILE, resolved)
    for name in (outputs.FINAL_SAVE_MARKER, "model.safetensors", "metrics.json"):
        (out / name).write_text("")
    args = SimpleNamespace(output_dir=str(out), resume_from_checkpoint=None)
    assert outputs.finished_run(out) == []
    lines = []
    assert outputs.prepare_output_dir(args, False, resolved, log=lines.append) == str(ckpt)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-3", "config.yaml"]
    assert f"removing {out / 'metrics.json'}: the final save of the run that wrote it did not finish" in lines


def mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_full_tmpfs_while_checkpointing_then_resume_when_there_is_room(tmp_path, embedded):
    """A real full disk: output_dir on a tmpfs with room for one checkpoint, not two. The run stops with one message,
    the first checkpoint stays complete, and once the disk has room the same command resumes from it and finishes."""
    probe = tmp_path / "probe"
    args = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
            "--per_device_train_batch_size", "4", "--eval_exact_match", "false", "--sample_generations_steps", "0"]
    sized = launch("sft_full", *args, "--max_steps", "2", "--output_dir", str(probe))
    assert sized.returncode == 0, sized.stderr[-3000:]
    checkpoint = sum(p.stat().st_size for p in (probe / "checkpoint-2").rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not mount_tmpfs(disk, int(checkpoint * 1.6)):
        pytest.skip("mounting a tmpfs needs root (the ENOSPC-injection tests above run anyway)")
    try:
        out = disk / "run"
        full = launch("sft_full", *args, "--output_dir", str(out), quiet=True)
        errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
        assert full.returncode != 0 and "Traceback" not in full.stderr and len(errors) == 1, full.stderr[-3000:]
        assert errors[0].startswith(f"error: no space left on the disk of {out} while saving checkpoint-4: a "
                                    "checkpoint needs about "), errors[0]
        assert f"{out / 'checkpoint-2'} is the last complete checkpoint: the same command resumes from it" in errors[0]
        assert [p.name for p in outputs.checkpoints(out)] == ["checkpoint-2"]
        assert outputs.checkpoint_problem(out / "checkpoint-2") is None
        assert not (out / "metrics.json").exists() and outputs.saved_config(out) is not None  # config.yaml whole

        subprocess.run(["mount", "-o", f"remount,size={checkpoint * 6}", str(disk)], check=True)
        resumed = launch("sft_full", *args, "--output_dir", str(out))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resuming from {out / 'checkpoint-2'} (step 2)" in resumed.stdout
        history = json.loads((out / "metrics.json").read_text())["log_history"]
        assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        shutil.rmtree(disk, ignore_errors=True)
