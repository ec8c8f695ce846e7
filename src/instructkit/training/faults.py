"""Faults from outside a run, each ending in one message and nothing lost: a full disk, SIGTERM, a second run.

* **A full disk while saving** (`guard_checkpoint_saves`, `final_save`). The Trainer writes a checkpoint file by file
  and the final model into output_dir itself; a full disk stops either half-way, with a library error that does not
  say why (torch.save: "unexpected pos 576 vs 534"). The save that failed is undone (the incomplete checkpoint
  folder, or every file the final save had written), so the last complete checkpoint is what the next run resumes
  from, and the error names the folder, the space a save needs and the space free.
* **SIGTERM** (`StopOnTerminate`), how SLURM, Kubernetes and spot instances preempt: the run finishes the step it is
  in, saves a checkpoint, and exits with one `stopped: ...` line and status 143 (128 + SIGTERM); the same command
  resumes from that checkpoint. Every process stops at the same step (the signal may reach only some of them).
  `accelerate launch` runs a single process as its child without passing SIGTERM on: the child asks the kernel for
  SIGTERM when its parent dies, so stopping the launcher stops the run the same way.
* **Two runs in one output_dir** (`lock_output_dir`): the first holds an `flock` on `output_dir/.instructkit.lock`,
  which names its pid, host, start time and command; a second is refused with those. The kernel drops the lock when
  its process dies however it dies (SIGKILL included), so a lock file left by a killed run is recognised as stale
  and taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from instructkit.errors import InstructkitError, Interrupted
from instructkit.log import log
from instructkit.training.outputs import last_complete

LOCK_FILE = ".instructkit.lock"
# what a full disk looks like in the errors of the writers a save goes through (Python, safetensors' Rust, hub)
DISK_FULL_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded", "StorageFull")
# files of a checkpoint that the final save does not write
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json")


# --- a full disk -----------------------------------------------------------------------------------------------

def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def free_bytes(path) -> int:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full(err: BaseException, directory, needed: int) -> bool:
    """Whether `err` (raised while writing into `directory`) comes from a full disk or quota. torch.save reports a
    failed write without its reason, so a writer's error while less than `needed` bytes are free counts too."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(seen) for text in DISK_FULL_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(err, RuntimeError) and free_bytes(directory) < needed


def _size(path: Path, skip=()) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.startswith(tuple(skip)))


def weight_bytes(model) -> tuple[int, int]:
    """(bytes of the weights a save writes: the trainable ones of an adapter, else all; bytes of the trainable ones)."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    every = sum(p.numel() * p.element_size() for p in model.parameters())
    return (trainable if hasattr(model, "peft_config") else every), trainable


def checkpoint_bytes(trainer, output_dir) -> tuple[int, str]:
    """(about how many bytes one checkpoint takes, how that was found)."""
    last, _ = last_complete(output_dir)
    if last is not None:
        return _size(last), f"the size of {last.name}"
    weights, trainable = weight_bytes(trainer.model)
    return weights + 2 * trainable * 4 + (1 << 20), "weights + AdamW states"  # two fp32 moments per trainable weight


def final_bytes(trainer, output_dir) -> int:
    """About how many bytes the final save writes: a checkpoint's weights and tokenizer, without training state."""
    last, _ = last_complete(output_dir)
    if last is not None:
        return _size(last, skip=TRAINING_STATE_FILES + ("rng_state",))
    return weight_bytes(trainer.model)[0] + (1 << 20)


def guard_checkpoint_saves(trainer) -> None:
    """A checkpoint save that a full disk stops is undone (the incomplete folder removed) and ends the run with one
    message. Wraps the Trainer's one method that writes a checkpoint (`_save_checkpoint`: weights, optimizer,
    scheduler, RNG and trainer state); nothing public lets a callback see a save fail."""
    save = trainer._save_checkpoint

    def guarded(model, trial, *args, **kwargs):
        try:
            return save(model, trial, *args, **kwargs)
        except Exception as err:
            out = Path(trainer._get_output_dir(trial=trial))
            needed, how = checkpoint_bytes(trainer, out)
            if not disk_full(err, out, needed):
                raise
            raise checkpoint_disk_full(trainer, out / f"checkpoint-{trainer.state.global_step}", needed, how) from err

    trainer._save_checkpoint = guarded


def checkpoint_disk_full(trainer, ckpt: Path, needed: int, how: str) -> InstructkitError:
    if trainer.accelerator.is_main_process:
        shutil.rmtree(ckpt, ignore_errors=True)
    last, _ = last_complete(ckpt.parent)
    free = free_bytes(ckpt.parent)
    kept = (f"{last} is the last complete checkpoint: the same command resumes from it" if last is not None
            else "no checkpoint is complete yet: the same command starts over")
    return InstructkitError(
        f"no space left on the disk of {ckpt.parent} while saving {ckpt.name}: a checkpoint needs about "
        f"{human(needed)} ({how}), {human(free)} are free once the incomplete {ckpt.name} is removed; {kept}.",
        fix=f"free at least {human(max(needed - free, 0))} on that disk (save_total_limit keeps fewer checkpoints; "
            "the next one is written before the oldest is removed), then run the same command again.")


@contextlib.contextmanager
def final_save(trainer, out: Path):
    """The final save (model, tokenizer, metrics, curves, model card) as one: when a full disk stops it, every file it
    had written at the top of `out` is removed again, so `out` holds the checkpoints to resume from, not half a
    model, and one message says so."""
    before = set(out.iterdir()) if out.is_dir() else set()
    try:
        yield
    except Exception as err:
        needed = final_bytes(trainer, out)
        if not disk_full(err, out, needed):
            raise
        if trainer.accelerator.is_main_process:
            for path in set(out.iterdir()) - before:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        last, _ = last_complete(out)
        kept = (f"the checkpoints are kept: the same command resumes from {last} and saves again" if last is not None
                else "no checkpoint was saved (save_strategy), so the same command trains again from the start")
        raise InstructkitError(
            f"no space left on the disk of {out} while saving the final model: it needs about {human(needed)}, "
            f"{human(free_bytes(out))} are free once what this save wrote is removed; {kept}.",
            fix="free that much space on the disk (or move output_dir, checkpoints and all, to a disk with room), "
                "then run the same command again.") from err


# --- SIGTERM -----------------------------------------------------------------------------------------------------

def _terminate_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent process (the launcher) dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))


def _on_any_process(flag: bool, device) -> bool:
    """Whether `flag` is set on any process of the run (one tiny all-reduce per step when there are several)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class StopOnTerminate(TrainerCallback):
    """On SIGTERM: a checkpoint at the end of the current optimizer step, then `Interrupted` (see the module)."""

    def __init__(self):
        self.received = False
        self.stop_step: int | None = None
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            signal.signal(signal.SIGTERM, self._on_signal)
            _terminate_with_parent()

    def _on_signal(self, signum, frame):
        self.received = True  # acted on at the next step boundary, outside the handler

    def on_step_end(self, args, state, control, **kwargs):
        if _on_any_process(self.received, args.device):
            log(f"SIGTERM: saving a checkpoint at step {state.global_step}, then stopping")
            control.should_save = control.should_training_stop = True
            self.stop_step = state.global_step

    def on_save(self, args, state, control, **kwargs):
        if self.stop_step is not None and state.global_step == self.stop_step:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            raise Interrupted(f"SIGTERM: training stopped at step {state.global_step} of {state.max_steps} after "
                              f"saving {ckpt}; run the same command again to resume from it.")

    def on_train_end(self, args, state, control, **kwargs):
        if self.received:
            log("SIGTERM arrived as training ended: the measurements and the final save go on")


# --- one run per output_dir --------------------------------------------------------------------------------------

_HELD: dict[Path, int] = {}


def lock_output_dir(output_dir) -> Path:
    """Hold `output_dir`'s lock for this process's lifetime (see the module); refused while another run holds it."""
    out = Path(output_dir).resolve()
    if out in _HELD:
        return out / LOCK_FILE
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        holder = _holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)  # again: the holder may have written its name since
            os.close(fd)
            raise InstructkitError(
                f"output_dir {out} is in use by another run: {_describe(holder)}.",
                fix="wait for that run to end, or pass another --output_dir (two runs in one folder would overwrite "
                    "each other's checkpoints).") from None
        except OSError:  # no flock on this filesystem: the holder's pid tells whether it still runs
            _refuse_if_alive(holder, path)
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)  # the holder ended and removed the file between open and lock: take the new one
    if holder:
        log(f"output_dir {out}: taking over the lock of a run that is no longer running ({_describe(holder)})")
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
          "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    _HELD[out] = fd
    atexit.register(_release, out, created)
    return path


def _holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "a run that has not written its name yet"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            + (f" ({holder['command'][:200]})" if holder.get("command") else ""))


def _refuse_if_alive(holder: dict, path: Path) -> None:
    if not holder or holder.get("pid") == os.getpid():
        return
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return  # gone: stale
        except (PermissionError, ValueError, KeyError):
            pass
    raise InstructkitError(f"output_dir {path.parent} is in use by another run: {_describe(holder)}.",
                           fix=f"wait for that run to end, or pass another --output_dir; if it has ended (this "
                               f"filesystem has no locks to tell), delete {path}.")


def _release(out: Path, created: bool) -> None:
    fd = _HELD.pop(out, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        (out / LOCK_FILE).unlink()  # while still holding it, so no other run holds a lock on a removed file
    os.close(fd)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()  # a run that stopped before writing anything leaves no empty folder
