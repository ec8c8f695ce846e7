"""Telling a local path from a hub name, once for models, tokenizers and data sets."""

from pathlib import Path


def looks_like_local_path(name: str, suffixes: tuple[str, ...] = ()) -> bool:
    """Hub names are "name" or "org/name"; anything else (./x, /x, ~/x, a/b/c, x.jsonl) is meant as local."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1
            or (bool(suffixes) and Path(name).suffix.lower() in suffixes))
