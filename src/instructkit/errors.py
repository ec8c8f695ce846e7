"""User-facing errors: one clear message naming the file/row/key and the fix.

Every entry point (recipes, CLI) runs inside `user_errors()`: an `InstructkitError` is printed as one
`error: ...` line and the process exits with status 2, without a library traceback. Set
`INSTRUCTKIT_DEBUG=1` to see the full traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys


class InstructkitError(Exception):
    """A problem with the user's input (config, data, paths), not a bug in instructkit."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message + (f" Fix: {fix}" if fix else ""))


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
    """Turn `InstructkitError` into a one-line message and exit status 2."""
    try:
        yield
    except InstructkitError as err:
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
