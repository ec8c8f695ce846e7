"""User-facing errors: one clear message naming the file/row/key and the fix.

Every entry point (recipes, CLI) runs inside `user_errors()`: an `InstructkitError` is printed as one
`error: ...` line and the process exits with status 2, without a library traceback (a run stopped by SIGTERM after
saving its checkpoint: one `stopped: ...` line, status 143). Set `INSTRUCTKIT_DEBUG=1` to see the full traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import sys


class InstructkitError(Exception):
    """A problem with the user's input (config, data, paths), not a bug in instructkit."""

    label, exit_status = "error", 2

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message + (f" Fix: {fix}" if fix else ""))


class Interrupted(InstructkitError):
    """The run was stopped from outside (SIGTERM) after saving what it resumes from: no mistake in the input."""

    label, exit_status = "stopped", 128 + 15  # the status a shell shows for a process SIGTERM ended


def close_match(name: str, candidates, cutoff: float = 0.6) -> str | None:
    """The candidate closest to `name` (case-insensitive), for a "did you mean"; None if nothing is close.

    Keys are suggested at a higher `cutoff` (0.75: a typo, not a different word that shares a prefix, such as
    torch_dtype / torch_compile)."""
    by_lower = {str(c).lower(): c for c in candidates}
    matches = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[matches[0]] if matches else None


def debug_enabled() -> bool:
    return os.environ.get("INSTRUCTKIT_DEBUG", "").lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def user_errors():
    """Turn `InstructkitError` into a one-line message and exit status 2; on the way out, however it ends, the
    process group of a multi-process launch is destroyed (`end_process_group`)."""
    try:
        yield
    except InstructkitError as err:
        if debug_enabled():
            raise
        say(f"{err.label}: {err}")
        sys.exit(err.exit_status)
    except OSError as err:  # a full disk anywhere a save does not already say so (logs, report_to files, ...)
        if debug_enabled() or err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        say(f"error: no space left on the disk holding {err.filename or 'a file this run writes'} ({err.strerror}). "
            "Fix: free space on that disk, then run the same command again (a run resumes from its last complete "
            "checkpoint).")
        sys.exit(2)
    finally:
        end_process_group()


def end_process_group() -> None:
    """Destroy torch.distributed's process group while the interpreter is still whole. A process that exits with it
    alive can abort in finalization (gloo's worker threads still hold work with Python references: SIGABRT,
    "terminate called without an active exception"; pytorch PR 179291), so a run that finished and saved ended with
    status -6 (seen once in CI, rank 1 of a DDP DPO run). Every rank gets here after the run's last collective (the
    save ends with `wait_for_everyone`); torch is only looked up, never imported."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def say(message: str) -> None:
    """Print `message` to stderr once per machine: under a multi-process launch every process meets the same bad
    input and would print the same lines; the first process to reach a message prints it (one only some processes
    meet is still printed). The processes of a launch share their parent, the launcher: a 0-byte marker file named
    by it and the message, in the temp folder, says a message was printed."""
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        import hashlib
        import tempfile

        key = hashlib.sha256(f"{os.getppid()}\n{message}".encode()).hexdigest()[:24]
        try:
            os.close(os.open(os.path.join(tempfile.gettempdir(), f"instructkit-said-{key}"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        except OSError:  # no writable temp folder: every process prints
            pass
    print(message, file=sys.stderr, flush=True)
