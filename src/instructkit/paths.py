"""Telling a local path from a hub name, once for models, tokenizers and data sets."""

from pathlib import Path


def looks_like_local_path(name: str, suffixes: tuple[str, ...] = ()) -> bool:
    """Hub names are "name" or "org/name"; anything else (./x, /x, ~/x, a/b/c, x.jsonl, and "dir/x" when dir is a
    local folder, such as outputs/sft_full) is meant as local."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1
            or (name.count("/") == 1 and Path(name.split("/")[0]).is_dir())
            or (bool(suffixes) and Path(name).suffix.lower() in suffixes))
