"""A run's output_dir: never overwrite a finished run unasked, resume an unfinished one from its last complete checkpoint.

Re-running a killed run's command resumes it. Before anything loads, `prepare_output_dir` decides:

* output_dir holds a **finished** run (`metrics.json` or saved weights at its top level): refused, unless
  `overwrite_output_dir: true`, which removes that run's checkpoints, weights and metrics and starts over. A final
  save that did not finish (killed, or the disk full) leaves `FINAL_SAVE_MARKER`: that run is unfinished, what the
  save wrote is removed and the run resumes from its last checkpoint;
* it holds **checkpoints** of an unfinished run: its `config.yaml` (written when that run started) must equal this
  run's resolved config, else refused with the keys that differ; then training resumes from the newest *complete*
  checkpoint. Transformers writes a checkpoint in place, file by file, `trainer_state.json` last, so a kill while
  saving leaves a folder that looks like a checkpoint: `checkpoint_problem` finds it (no valid trainer state, a
  truncated weights / optimizer / RNG file) and it is skipped, and removed if newer than the one resumed from;
* `resume_from_checkpoint: <path>` resumes from exactly that checkpoint (it must be complete), whatever the config.

The Trainer then restores weights, optimizer, scheduler and RNG states and skips the batches already seen, so the
resumed loss curve continues the interrupted one (tests/test_resume.py measures it).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zipfile
from pathlib import Path

import yaml

from instructkit.config.resolved import write_yaml
from instructkit.errors import InstructkitError

CONFIG_FILE, METRICS_FILE, SAMPLES_FILE = "config.yaml", "metrics.json", "samples.jsonl"
FINAL_SAVE_MARKER = ".final_save_incomplete"  # written before the final save, removed once metrics.json is written
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
FINISHED_MARKERS = (METRICS_FILE, "model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
# Keys that may differ between the run that wrote the checkpoints and the run resuming them.
RESUME_IGNORES = ("resume_from_checkpoint", "overwrite_output_dir")


def checkpoints(output_dir) -> list[Path]:
    """`checkpoint-<step>` folders, oldest step first."""
    out = Path(output_dir)
    found = [p for p in out.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)] if out.is_dir() else []
    return sorted(found, key=step_of)


def step_of(checkpoint: Path) -> int:
    return int(CHECKPOINT.match(Path(checkpoint).name).group(1))


def finished_run(output_dir) -> list[str]:
    """What marks `output_dir` as holding a finished run (empty if nothing does, or its final save did not finish)."""
    out = Path(output_dir)
    return [] if (out / FINAL_SAVE_MARKER).is_file() else _final_files(out)


def _final_files(out: Path) -> list[str]:
    return [name for name in FINISHED_MARKERS if (out / name).is_file()] + [p.name for p in out.glob("model-*.safetensors")]


def unfinished_final_save(output_dir) -> list[Path]:
    """What a final save that did not finish left at the top of `output_dir` (its marker last), else nothing."""
    out = Path(output_dir)
    if not (out / FINAL_SAVE_MARKER).is_file():
        return []
    return [out / name for name in _final_files(out)] + [out / FINAL_SAVE_MARKER]


# --- is a checkpoint complete? -----------------------------------------------------------------------------------

def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is complete when its header parses and the data it announces is all there."""
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, OSError):
        return f"{path.name} is truncated or corrupt"
    if path.stat().st_size != 8 + header_len + end:
        return f"{path.name} is truncated ({path.stat().st_size} of {8 + header_len + end} bytes)"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """`torch.save` writes a zip archive whose directory comes last: a file cut short has none."""
    try:
        with zipfile.ZipFile(path):
            return None
    except (zipfile.BadZipFile, OSError):
        return f"{path.name} is truncated or corrupt"


def checkpoint_problem(checkpoint, world_size: int = 1) -> str | None:
    """Why `checkpoint` cannot be resumed from (half-written by a kill, say), or None if it is complete."""
    ckpt = Path(checkpoint)
    state_file = ckpt / "trainer_state.json"
    if not state_file.is_file():
        return "trainer_state.json is missing (the save did not finish)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return "trainer_state.json is truncated or corrupt"
    if CHECKPOINT.match(ckpt.name) and state.get("global_step") != step_of(ckpt):
        return f"trainer_state.json is for step {state.get('global_step')}, not {step_of(ckpt)}"
    for path in sorted(ckpt.glob("*.safetensors")):
        if problem := _safetensors_problem(path):
            return problem
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, OSError):
            return "model.safetensors.index.json is truncated or corrupt"
        if missing := sorted(s for s in shards if not (ckpt / s).is_file()):
            return f"weight shards are missing: {', '.join(missing)}"
    for path in sorted([*ckpt.glob("*.pt"), *ckpt.glob("*.pth")]):
        if problem := _torch_file_problem(path):
            return problem
    if world_size > 1 and (ckpt / "rng_state_0.pth").is_file():
        if missing := [f"rng_state_{i}.pth" for i in range(world_size) if not (ckpt / f"rng_state_{i}.pth").is_file()]:
            return f"{', '.join(missing)} missing (another process was still saving)"
    return None


def last_complete(output_dir, world_size: int = 1) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint in `output_dir` (or None), and the newer incomplete ones with their problem."""
    skipped = []
    for ckpt in reversed(checkpoints(output_dir)):
        problem = checkpoint_problem(ckpt, world_size)
        if problem is None:
            return ckpt, skipped
        skipped.append((ckpt, problem))
    return None, skipped


# --- what a new run does with output_dir ---------------------------------------------------------------------------

def config_differences(saved: dict, current: dict) -> list[str]:
    """`key: saved -> current` for every setting that differs (keys in RESUME_IGNORES aside)."""
    keys = sorted((set(saved) | set(current)) - set(RESUME_IGNORES))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def saved_config(output_dir) -> dict | None:
    """The resolved config a run wrote to output_dir/config.yaml when it started (None if missing or unreadable)."""
    try:
        saved = yaml.safe_load((Path(output_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) else None


def check_output_dir(training_args, overwrite: bool) -> None:
    """The checks that need no resolved config, read only, before anything loads: an explicit
    `resume_from_checkpoint` must be complete, output_dir must not be a file nor hold a finished run (unless
    `overwrite`)."""
    from accelerate import PartialState

    out, explicit = Path(training_args.output_dir), training_args.resume_from_checkpoint
    world = PartialState().num_processes
    if explicit and overwrite:
        raise InstructkitError("resume_from_checkpoint and overwrite_output_dir are both set: one continues a run, the "
                               "other starts over.", fix="drop one of the two.")
    if explicit:
        problem = "it does not exist" if not Path(explicit).is_dir() else checkpoint_problem(explicit, world)
        if problem:
            parent = Path(explicit).parent
            complete = [p.name for p in checkpoints(parent) if checkpoint_problem(p, world) is None]
            where = f"{parent} holds {', '.join(complete)}" if complete else f"{parent} holds none"
            raise InstructkitError(f"resume_from_checkpoint {explicit} cannot be resumed from: {problem}.",
                                   fix=f"pass a complete checkpoint-<step> folder ({where}), or leave "
                                       "resume_from_checkpoint unset to resume automatically from the newest "
                                       "complete one.")
    if out.exists() and not out.is_dir():
        raise InstructkitError(f"output_dir {out} is a file, not a folder.", fix="pass a folder path as --output_dir.")
    finished = finished_run(out)
    if finished and not overwrite:
        raise InstructkitError(f"output_dir {out} holds a finished run ({', '.join(finished)}); this run would "
                               "overwrite it.",
                               fix="pass a new --output_dir, or --overwrite_output_dir true to replace that run.")


def prepare_output_dir(training_args, overwrite: bool, resolved: dict, log=print) -> str | None:
    """Check `output_dir` and make it ready; returns the checkpoint to resume from (None: start at step 0).

    `resolved`: this run's resolved config (`RecipeConfig.as_dict`), written to `output_dir/config.yaml` (the one
    time it is written) so a relaunch can tell its own checkpoints from another run's. In a multi-process run every
    process calls this; the main process alone removes and writes files.
    """
    from accelerate import PartialState

    state = PartialState()
    check_output_dir(training_args, overwrite)
    out = Path(training_args.output_dir)
    if overwrite:
        resume, stale = None, checkpoints(out) + [out / name for name in _final_files(out)]
    elif training_args.resume_from_checkpoint:
        resume, stale = str(training_args.resume_from_checkpoint), []
        log(f"resuming from {resume} (resume_from_checkpoint)")
    else:
        resume, stale = _automatic_resume(out, resolved, state.num_processes, log)
    if state.is_main_process:
        for ckpt in checkpoints(out):  # written by an older instructkit or a plain Trainer run
            drop_pickled_args(ckpt)
        for path in unfinished_final_save(out):
            log(f"removing {path}: the final save of the run that wrote it did not finish")
            path.unlink(missing_ok=True)
        for path in stale:
            if overwrite:
                log(f"overwrite_output_dir: removing {path}")
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / CONFIG_FILE, resolved)  # atomically: a kill never leaves half a config.yaml
    state.wait_for_everyone()
    return resume


def _automatic_resume(out: Path, resolved: dict, world_size: int, log) -> tuple[str | None, list[Path]]:
    """(the newest complete checkpoint of an unfinished run with this config, or None; incomplete ones to remove)."""
    if not checkpoints(out):
        return None, []
    saved = saved_config(out)
    differences = config_differences(saved, resolved) if saved is not None else []
    if saved is None or differences:
        shown = "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more" if len(differences) > 8 else "")
        raise InstructkitError(
            f"output_dir {out} holds checkpoints of an unfinished run with a different config ({shown})."
            if differences else f"output_dir {out} holds checkpoints but no readable config.yaml of the run that "
                                "wrote them, so they may belong to another config.",
            fix="rerun that run's exact command to resume it, pass --resume_from_checkpoint <its checkpoint> to "
                "continue it with this config, --overwrite_output_dir true to start over, or a new --output_dir.")
    ckpt, stale_pairs = last_complete(out, world_size)
    for path, problem in stale_pairs:
        log(f"skipping incomplete {path.name}: {problem}; it is removed and will be written again")
    if ckpt is None:
        log(f"no complete checkpoint in {out}: starting at step 0")
        return None, [path for path, _ in stale_pairs]
    log(f"resuming from {ckpt} (step {step_of(ckpt)}): the same config left it unfinished")
    return str(ckpt), [path for path, _ in stale_pairs]


def drop_pickled_args(checkpoint) -> None:
    """Remove `training_args.bin` from a checkpoint: a pickle (unsafe to load) holding every argument, credentials
    such as hub_token included. Resuming does not read it; config.yaml holds the settings, credentials redacted."""
    (Path(checkpoint) / "training_args.bin").unlink(missing_ok=True)
