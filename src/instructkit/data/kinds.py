"""What a recipe trains on: instructions (SFT) or preference pairs (DPO). A kind says which row formats it takes and
where the embedded default keeps its data of that kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from instructkit.embedded import ensure_embedded, ensure_preference_data


def _embedded_instructions() -> Path:

    return ensure_embedded().data_dir


def _embedded_preferences() -> Path:

    return ensure_preference_data()


@dataclass(frozen=True)
class DataKind:
    name: str                          # what the rows are, in messages
    formats: tuple[str, ...]           # the row formats (data.formats) of this kind
    recipes: str                       # which recipes train on it, for the fix of a wrong-kind error
    embedded_dir: Callable[[], Path]   # `dataset_name: embedded` for this kind


INSTRUCTIONS = DataKind("instructions", ("alpaca", "prompt_completion", "messages", "sharegpt", "text"),
                        "an SFT recipe (sft_full, sft_lora, sft_qlora)", _embedded_instructions)
PREFERENCES = DataKind("preference pairs (chosen / rejected)", ("preference",), "recipes/dpo.py",
                       _embedded_preferences)
