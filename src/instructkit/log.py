"""One log line per event, from the main process only (not one per rank)."""

from __future__ import annotations


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def log(message: str) -> None:
    """Print `[instructkit] message` on the main process."""
    if is_main_process():
        print(f"[instructkit] {message}", flush=True)
