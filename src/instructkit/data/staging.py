"""Converted rows between validation and their Arrow file: JSON lines in a temporary file, chosen by index.

Per row, preparation holds its byte offset and one byte saying its form, whether it is a conversation and whether it
carries tools; not the row. Held-out splits and mixture weights choose row indices with the same seeded calls that
chose rows before (`data.splits`, `data.mixtures`), so the same seed picks the same rows; `data.storage` writes each
choice to its Arrow file in batches. The file has no name on disk and is gone when the stage is closed (or the
process ends).
"""

from __future__ import annotations

import json
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from instructkit.data.conversations import has_tools
from instructkit.data.formats import form_of, is_conversational

FORMS = ("prompt_completion", "messages", "text", "preference")
_FORM_BITS, _CONVERSATIONAL, _TOOLS = 3, 4, 8


@dataclass(frozen=True)
class Summary:
    """What the rows of a choice are: their TRL forms, whether any is a conversation, whether any carries tools."""

    forms: frozenset
    conversational: bool
    tools: bool


class Stage:
    """Converted rows appended one by one (`append`), then read back by index (`lines`, `rows`, `summary`)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=folder, prefix="staging-")
        self._offsets = array("q", [0])
        self._flags = bytearray()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self._flags)

    def append(self, row: dict) -> None:
        line = json.dumps(row, sort_keys=True).encode() + b"\n"
        self._file.write(line)
        self._offsets.append(self._offsets[-1] + len(line))
        self._flags.append(FORMS.index(form_of(row)) | _CONVERSATIONAL * is_conversational(row)
                           | _TOOLS * has_tools([row]))

    def lines(self, indices: Iterable[int]) -> Iterator[bytes]:
        """The rows' JSON lines in the order of `indices` (repeats included)."""
        self._file.flush()
        offsets, f = self._offsets, self._file
        for i in indices:
            f.seek(offsets[i])
            yield f.read(offsets[i + 1] - offsets[i])

    def rows(self, indices: Iterable[int]) -> Iterator[dict]:
        return (json.loads(line) for line in self.lines(indices))

    def summary(self, indices: Iterable[int]) -> Summary:
        flags = {self._flags[i] for i in indices}
        return Summary(forms=frozenset(FORMS[f & _FORM_BITS] for f in flags),
                       conversational=any(f & _CONVERSATIONAL for f in flags), tools=any(f & _TOOLS for f in flags))
