"""A run killed with SIGKILL at a random step, relaunched with the same command, resumes from its last complete
checkpoint and ends with the loss curve (and weights) of an uninterrupted run; a half-written checkpoint is never
resumed from; a run stopped by SIGTERM saves a checkpoint where it stopped and resumes from it the same way; a
finished run is not overwritten; no credential reaches the outputs or the logs.

Measured on CPU (torch 2.13, 2 threads): the resumed run's losses and final weights equal the uninterrupted run's
exactly (max difference 0.0); the test allows 1e-6 relative.
"""

import json
import os
import random
import shutil
import signal
import subprocess

import pytest

from conftest import ROOT, launch, launch_command
from instructkit.training import outputs

MAX_STEPS, SAVE_STEPS = 12, 3
CLI_SECRET, ENV_SECRET = "hf_cliSECRETdoNotLog1234", "hf_envSECRETdoNotLog5678"
ARGS = ["--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
        "--logging_steps", "1", "--per_device_train_batch_size", "4", "--eval_exact_match", "false",
        "--hub_token", CLI_SECRET]
ENV = {"HF_TOKEN": ENV_SECRET, "PYTHONUNBUFFERED": "1"}
TOLERANCE = 1e-6  # relative, per logged loss


def losses(out) -> list[tuple[int, float]]:
    history = json.loads((out / "metrics.json").read_text())["log_history"]
    return [(h["step"], h["loss"]) for h in history if "loss" in h]


def step_to_stop(variable: str) -> int:
    """A random step between the first checkpoint and the end, or the one `variable` names (to repeat a run)."""
    return int(os.environ.get(variable) or random.randint(SAVE_STEPS + 1, MAX_STEPS - 2))


def assert_uninterrupted_curve(ref_out, out, seen: str, tolerance: float = TOLERANCE) -> list:
    """The resumed run logged every step once, each loss the uninterrupted run's (relative `tolerance`)."""
    ref, got = losses(ref_out), losses(out)
    assert [s for s, _ in got] == list(range(1, MAX_STEPS + 1)), seen
    worst = max(abs(a - b) / abs(a) for (_, a), (_, b) in zip(ref, got))
    print(f"{seen}: max relative loss difference {worst:.1e}")  # pytest -s shows it
    assert worst <= tolerance, f"{seen}: max relative loss difference {worst}\nreference {ref}\nresumed   {got}"
    return got


@pytest.fixture(scope="module")
def reference(tmp_path_factory, embedded):
    """The uninterrupted run: its output dir and its process."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = launch("sft_full", *ARGS, "--output_dir", str(out), env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def kill_tree(pid: int) -> None:
    """SIGKILL to the launch and every process under it at once, as a scheduler ends a job (its cgroup). torchrun
    starts each DDP worker in a session of its own: a SIGKILL of the launcher's process group does not reach them,
    and they get SIGTERM as their parent dies (faults._terminate_with_parent), save and stop -- the SIGTERM test's
    fault, not this one."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs[1:], timeout=60)  # the launcher itself: the caller's Popen.wait (its exit status)


def kill_at_step(out, step: int, args=ARGS, config: str = "single_gpu") -> int:
    """Launch the run and SIGKILL it with every process under it once `step` training steps are logged; returns how
    many steps had been logged when the kill landed."""
    cmd = launch_command("sft_full", *args, "--output_dir", str(out), config=config)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **ENV}, start_new_session=True)
    logged = 0
    try:
        for line in proc.stdout:  # the Trainer prints one {'loss': ...} line per step (logging_steps 1)
            logged += line.lstrip().startswith("{'loss'")
            if logged >= step:
                kill_tree(proc.pid)
                break
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself (exit {proc.returncode}) before step {step}"
    return logged


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_complete_checkpoint_and_matches(reference, tmp_path):
    from safetensors.torch import load_file

    ref_out, _ = reference
    kill_step = step_to_stop("INSTRUCTKIT_KILL_STEP")
    seen = f"(killed after step {kill_step}; INSTRUCTKIT_KILL_STEP={kill_step} repeats it)"
    out = tmp_path / "run"
    kill_at_step(out, kill_step)
    assert not (out / "metrics.json").exists(), seen
    last, _ = outputs.last_complete(out)
    assert last is not None and outputs.step_of(last) >= SAVE_STEPS, seen

    # A kill while saving leaves a folder that looks like a checkpoint: weights written, optimizer cut short, no
    # trainer_state.json. If the kill did not land in a save, make one as that save would have left it.
    half = out / f"checkpoint-{outputs.step_of(last) + SAVE_STEPS}"
    if not half.exists():
        shutil.copytree(last, half)
        (half / "trainer_state.json").unlink()
        optimizer = (half / "optimizer.pt").read_bytes()
        (half / "optimizer.pt").write_bytes(optimizer[: len(optimizer) // 2])
    assert outputs.checkpoint_problem(half) is not None

    resumed = launch("sft_full", *ARGS, "--output_dir", str(out), env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"skipping incomplete {half.name}" in resumed.stdout, seen
    assert f"resuming from {last} (step {outputs.step_of(last)})" in resumed.stdout, seen

    assert json.loads((out / "metrics.json").read_text())["resumed_from"] == str(last)
    got = assert_uninterrupted_curve(ref_out, out, seen)
    ref_w, got_w = load_file(ref_out / "model.safetensors"), load_file(out / "model.safetensors")
    assert max((ref_w[k] - got_w[k]).abs().max().item() for k in ref_w) <= 1e-6, seen

    # the same command once more: the run is finished, and it is not overwritten
    again = launch("sft_full", *ARGS, "--output_dir", str(out), env=ENV, quiet=True)
    assert again.returncode != 0 and "Traceback" not in again.stderr, again.stderr[-3000:]
    assert [line for line in again.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: output_dir {out} holds a finished run (metrics.json, model.safetensors); this run would overwrite it. "
        "Fix: pass a new --output_dir, or --overwrite_output_dir true to replace that run."]
    assert losses(out) == got


# 2 processes x 2 rows: the reference's global batch of 4, the same rows per step (tests/test_distributed.py)
DDP_ARGS = list(ARGS)
DDP_ARGS[ARGS.index("--per_device_train_batch_size") + 1] = "2"
DDP_TOLERANCE = 1e-4  # relative: DDP sums in another order (measured over 3 steps: 1.5e-7; tests/test_distributed)


@pytest.mark.slow
def test_killed_ddp_run_resumes_with_every_rank_and_matches_the_uninterrupted_run(reference, tmp_path):
    """kill -9 of a 2-process DDP launch (launcher and both ranks): the same command resumes both ranks from the last
    complete checkpoint (each its own RNG state) and ends with the uninterrupted run's loss curve."""
    ref_out, _ = reference
    kill_step = step_to_stop("INSTRUCTKIT_KILL_STEP")
    seen = f"(killed after step {kill_step}; INSTRUCTKIT_KILL_STEP={kill_step} repeats it)"
    out = tmp_path / "run"
    kill_at_step(out, kill_step, DDP_ARGS, config="ddp")
    last, _ = outputs.last_complete(out, world_size=2)
    assert last is not None and {p.name for p in last.glob("rng_state_*.pth")} == {"rng_state_0.pth",
                                                                                    "rng_state_1.pth"}, seen
    resumed = launch("sft_full", *DDP_ARGS, "--output_dir", str(out), env=ENV, config="ddp", timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {last} (step {outputs.step_of(last)})" in resumed.stdout, seen
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["launch"]["distributed_type"] == "MULTI_CPU" and metrics["launch"]["processes"] == 2
    assert_uninterrupted_curve(ref_out, out, f"kill -9 under DDP {seen}", DDP_TOLERANCE)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(reference, tmp_path):
    """SIGTERM to the whole launch (as SLURM / Kubernetes preempt a job) between two checkpoint steps: the run saves a
    checkpoint at the end of the step it is in and stops with one line; the same command resumes from it and ends
    with the uninterrupted run's loss curve."""
    ref_out, _ = reference
    term_step = step_to_stop("INSTRUCTKIT_TERM_STEP")
    if term_step % SAVE_STEPS == 0:
        term_step += 1  # between two scheduled checkpoints, so the one saved is SIGTERM's
    seen = f"(SIGTERM after step {term_step}; INSTRUCTKIT_TERM_STEP={term_step} repeats it)"
    out = tmp_path / "run"
    stderr = tmp_path / "stderr.txt"
    cmd = launch_command("sft_full", *ARGS, "--output_dir", str(out))
    with open(stderr, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, **ENV}, start_new_session=True)
        logged, sent = 0, False
        for line in proc.stdout:
            logged += line.lstrip().startswith("{'loss'")
            if logged == term_step and not sent:  # one SIGTERM, as a scheduler sends it
                os.killpg(proc.pid, signal.SIGTERM)  # the launcher dies of it; the recipe saves, then ends
                sent = True
        proc.wait(timeout=600)  # stdout ended: the recipe has exited too
    stopped = [line for line in stderr.read_text().splitlines() if line.startswith("stopped: ")]
    assert len(stopped) == 1 and "Traceback" not in stderr.read_text().split("stopped: ")[-1], seen
    # the step the signal found running, or the next one if it landed between two
    saved = outputs.checkpoints(out)[-1]
    assert outputs.step_of(saved) in (term_step, term_step + 1) and outputs.checkpoint_problem(saved) is None, seen
    assert stopped[0] == (f"stopped: SIGTERM: training stopped at step {outputs.step_of(saved)} of {MAX_STEPS} after "
                          f"saving {saved}; run the same command again to resume from it."), seen
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()

    resumed = launch("sft_full", *ARGS, "--output_dir", str(out), env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {saved} (step {outputs.step_of(saved)})" in resumed.stdout, seen
    assert "taking over the lock" in resumed.stdout or not (out / ".instructkit.lock").exists()
    assert_uninterrupted_curve(ref_out, out, seen)


@pytest.mark.slow
def test_no_credential_reaches_outputs_checkpoints_or_logs(reference):
    """hub_token on the command line and HF_TOKEN in the environment: not in config.yaml, metrics.json, the
    checkpoints (the Trainer pickles its arguments into training_args.bin, which is removed), the model card or the
    logs."""
    out, proc = reference
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.yaml", "metrics.json", "README.md", "trainer_state.json"} <= {p.name for p in files}
    assert not [p for p in files if p.name == "training_args.bin"]
    for secret in (CLI_SECRET, ENV_SECRET):
        assert not [p for p in files if secret.encode() in p.read_bytes()], secret
        assert secret not in proc.stdout and secret not in proc.stderr
    assert "hub_token: <redacted>" in (out / "config.yaml").read_text()


def test_checkpoint_problem_finds_every_half_written_file(tmp_path):
    """A save cut short at any file: that checkpoint is incomplete and resuming picks the one before."""
    import torch
    from safetensors.torch import save_file

    def checkpoint(step):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        save_file({"w": torch.ones(64, 64)}, ckpt / "model.safetensors")
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            torch.save({"state": torch.zeros(256)}, ckpt / name)
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
        return ckpt

    good, bad = checkpoint(3), checkpoint(6)
    assert outputs.checkpoint_problem(good) is None and outputs.last_complete(tmp_path) == (bad, [])
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        original = (bad / name).read_bytes()
        (bad / name).write_bytes(original[: len(original) // 2])
        assert name in outputs.checkpoint_problem(bad)
        assert outputs.last_complete(tmp_path) == (good, [(bad, outputs.checkpoint_problem(bad))])
        (bad / name).write_bytes(original)
    (bad / "trainer_state.json").unlink()
    assert outputs.checkpoint_problem(bad) == "trainer_state.json is missing (the save did not finish)"
    (bad / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    assert outputs.checkpoint_problem(bad) == "trainer_state.json is for step 5, not 6"
    (bad / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    assert outputs.checkpoint_problem(bad, world_size=1) is None
    (bad / "rng_state.pth").rename(bad / "rng_state_0.pth")
    assert outputs.checkpoint_problem(bad, world_size=2) == "rng_state_1.pth missing (another process was still saving)"


def test_overwrite_removes_the_finished_run_and_its_checkpoints(tmp_path):
    from types import SimpleNamespace

    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)
    for name in ("metrics.json", "model.safetensors", "tokenizer.json"):
        (out / name).write_text("{}")
    lines = []
    args = SimpleNamespace(output_dir=str(out), resume_from_checkpoint=None)
    assert outputs.prepare_output_dir(args, True, {"learning_rate": 1e-3}, log=lines.append) is None
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "tokenizer.json"]
    assert lines == [f"overwrite_output_dir: removing {out / n}" for n in ("checkpoint-3", "metrics.json",
                                                                           "model.safetensors")]
    # killed before its first checkpoint: nothing to resume, a new config starts over
    assert outputs.prepare_output_dir(args, False, {"learning_rate": 5e-4}, log=lines.append) is None


def test_trust_remote_code_is_off_by_default():
    from trl import DPOConfig, ModelConfig, SFTConfig

    from instructkit.config.arguments import InstructkitArguments
    from instructkit.config.parsing import parse_args as parse_recipe_args

    for config in (SFTConfig, DPOConfig):
        parsed = parse_recipe_args((InstructkitArguments, config, ModelConfig), args=["--output_dir", "x"])
        assert parsed[1].trust_remote_code is False
