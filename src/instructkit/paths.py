"""Telling a local path from a hub name, once for models, tokenizers and data sets; and writing a file atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def looks_like_local_path(name: str, suffixes: tuple[str, ...] = ()) -> bool:
    """Hub names are "name" or "org/name"; anything else (./x, /x, ~/x, a/b/c, x.jsonl, and "dir/x" when dir is a
    local folder, such as outputs/sft_full) is meant as local."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1
            or (name.count("/") == 1 and Path(name.split("/")[0]).is_dir())
            or (bool(suffixes) and Path(name).suffix.lower() in suffixes))


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to `path` to write to; when the block ends without an error it replaces `path` in one
    step, else it is removed. A kill or a full disk never leaves half a file at `path`: the old one or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        with open(partial, "rb+") as f:  # on disk before the rename, so a crash cannot leave it empty
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as partial:
        partial.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)
