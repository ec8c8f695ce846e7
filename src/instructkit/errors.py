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
    """Turn `InstructkitError` into a one-line message and exit status 2. A process of a multi-process launch that
    gets to the end (done, or a user error) leaves through `leave` (no interpreter finalization)."""
    try:
        yield
    except InstructkitError as err:
        if debug_enabled():
            raise
        say(f"{err.label}: {err}")
        leave(err.exit_status)
    except OSError as err:  # a full disk anywhere a save does not already say so (logs, report_to files, ...)
        if debug_enabled() or err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        say(f"error: no space left on the disk holding {err.filename or 'a file this run writes'} ({err.strerror}). "
            "Fix: free space on that disk, then run the same command again (a run resumes from its last complete "
            "checkpoint).")
        leave(2)
    leave(0)


def leave(status: int) -> None:
    """Exit with `status`. One process: `sys.exit`. A process of a multi-process launch destroys its process group,
    runs the exit handlers (atexit: locks released, logs flushed), flushes its streams and ends with `os._exit`,
    skipping interpreter finalization: there, with gloo's worker threads still holding work with Python references,
    a process can abort ("terminate called without an active exception", SIGABRT; pytorch PR 179291), and a
    finished run is reported as failed (docs/launching.md). Every rank gets here after the run's last collective
    (the save ends with `wait_for_everyone`); torch is only looked up, never imported."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if status:
            sys.exit(status)
        return
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    import atexit

    atexit._run_exitfuncs()  # CPython's own exit-handler run (what a normal exit does first)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


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
