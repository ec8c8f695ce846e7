"""What happened to the rows of a data set: counts per split and data set, skips by reason, truncation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from instructkit.errors import InstructkitError


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
    excluded: list = field(default_factory=list)  # file:row of valid training rows left out (decontaminate: drop)
    decontamination: dict | None = None  # the overlap report of the training rows with the benchmarks

    def as_dict(self) -> dict:
        return {"format": self.format, "rows": self.rows, "skipped": dict(self.skipped), "truncated": self.truncated,
                **({"ignored_columns": dict(self.ignored)} if self.ignored else {}),
                **({"mixture": self.mixture} if self.mixture else {}),
                **({"excluded": self.excluded} if self.excluded else {})}

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
        if self.excluded:
            shown = ", ".join(self.excluded[:20]) + (f" and {len(self.excluded) - 20} more" if len(self.excluded) > 20
                                                     else "")
            out.append(f"data: {len(self.excluded)} training rows left out (decontaminate: drop; their n-grams "
                       f"overlap benchmark questions): {shown}")
        return out


def check_rows_left(rows: list, report: DataReport, where: str, what: str) -> None:
    """Training rows remain after validation and exclusion; else one message saying what removed them.
    `where`: the data set; `what`: where its training rows came from (split 'train', every data set)."""
    if rows:
        return
    reasons = ", ".join(f"{r}: {n}" for r, n in report.skipped.most_common())
    if report.excluded:
        shown = ", ".join(report.excluded[:5]) + (", ..." if len(report.excluded) > 5 else "")
        raise InstructkitError(f"{where}: no training rows left: decontaminate: drop removed all "
                               f"{len(report.excluded)} valid rows of {what}, since each shares an n-gram with a "
                               f"benchmark question ({shown})" + (f"; the others were invalid ({reasons})" if reasons
                                                                  else "") + ".",
                               fix="train on other data, raise decontamination_ngram (only longer overlaps count), "
                                   "or set decontaminate: report to keep the rows and see the overlaps listed.")
    raise InstructkitError(f"{where}: no training rows left: "
                           + (f"every row of {what} was skipped as invalid ({reasons})." if reasons
                              else f"{what} is empty."),
                           fix="correct the rows (on_bad_rows: error lists them with their row numbers).")
