"""What happened to the rows of a data set: counts per split and data set, skips by reason, truncation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DataReport:
    """What happened to the rows: counts per split, skips by reason, detected format."""

    format: str = ""
    form: str = ""               # what the rows became: prompt_completion | messages | text | preference
    rows: dict = field(default_factory=dict)
    mixture: list = field(default_factory=list)  # per data set of a mixture: path, format, rows read, rows used
    skipped: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)  # columns no format field reads (scores, ids): rows with each
    truncated: int = 0
    conversational: bool = True  # rows are message lists (rendered by the chat template), not plain strings

    def as_dict(self) -> dict:
        return {"format": self.format, "rows": self.rows, "skipped": dict(self.skipped), "truncated": self.truncated,
                **({"ignored_columns": dict(self.ignored)} if self.ignored else {}),
                **({"mixture": self.mixture} if self.mixture else {})}

    def lines(self) -> list[str]:
        out = [f"data: format={self.format} " + " ".join(f"{k}={v}" for k, v in self.rows.items())]
        out += [f"data: mixture {m['path']} [{m['split']}] ({m['format']}): {m['used']} rows from {m['rows']} ("
                + (f"fraction {m['fraction']}" if "fraction" in m else f"weight {m['weight']}")
                + (f"; columns dropped: {', '.join(m['dropped_columns'])}" if m.get("dropped_columns") else "") + ")"
                for m in self.mixture]
        if self.ignored:
            out.append("data: columns no field of the format reads, ignored: "
                       + ", ".join(f"{c} ({n} rows)" for c, n in self.ignored.most_common()))
        if self.skipped:
            out.append("data: skipped rows by reason: " + ", ".join(f"{r}: {n}" for r, n in self.skipped.most_common()))
        return out
