"""Decontamination report: which training rows share word n-grams with which benchmark questions.

A fine-tuned model that saw the test questions scores high for the wrong reason, and none of the usual recipes check.
Normalisation and n-grams are lm-eval's own (its `decontamination.janitor`: lower case, punctuation removed, word
n-grams); the benchmark side is each task's own decontamination query (TruthfulQA: the question) or, for tasks that
define none (MMLU), the `question` field, else the prompt. Questions shorter than n words are matched whole, so
short questions are checked too (down to 3 words; shorter ones would match almost any text).
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections import defaultdict
from pathlib import Path

from instructkit.embedded import ensure_embedded
from instructkit.errors import InstructkitError
from instructkit.evaluation.harness import prepare_tasks

MIN_WORDS = 3  # questions shorter than this are not checked
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@functools.cache
def _janitor():
    """lm-eval's janitor module and a Janitor; the import prints a warning and a traceback when its C++ helper is
    not built (it then runs in Python, which is what is used here)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lm_eval.decontamination import janitor
    return janitor, janitor.Janitor()


def ngrams(text: str, n: int) -> set[str]:
    janitor, cleaner = _janitor()
    words = cleaner.normalize_string(text).split()
    return set(janitor.word_ngrams(" ".join(words), min(n, len(words)))) if words else set()


def row_text(row) -> str:
    """Every string in a row (instruction/input/output, messages' contents, prompt/completion, ...), joined."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return " ".join(row_text(v) for k, v in row.items() if k != "role")
    if isinstance(row, (list, tuple)):
        return " ".join(row_text(v) for v in row)
    return ""


def training_files(sources: list[str]) -> list[Path]:
    """Data files named by `sources`: files, folders (their train* files if any, else every data file), 'embedded'."""
    files = []
    for source in sources:
        if source == "embedded":
            files.append(ensure_embedded().data_dir / "train.jsonl")
            continue
        path = Path(source).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in DATA_SUFFIXES)
            files += [p for p in found if p.name.startswith("train")] or found
        else:
            raise InstructkitError(f"training data {source} is not a file or folder.",
                                   fix="pass local .jsonl/.json/.csv/.parquet files or folders, or 'embedded'.")
    return files


def read_rows(path: Path) -> list:
    import datasets

    if path.suffix not in DATA_SUFFIXES:
        raise InstructkitError(f"{path} is not a data file ({', '.join(DATA_SUFFIXES)}).", fix="pass a data file.")
    try:
        return list(datasets.load_dataset(DATA_SUFFIXES[path.suffix], data_files=str(path), split="train"))
    except Exception as err:  # noqa: BLE001 - any reader failure is the user's file
        raise InstructkitError(f"could not read {path}: {type(err).__name__}: {err}.",
                               fix="check that the file is valid for its extension.") from None


def benchmark_questions(loaded_tasks: dict) -> dict[str, list[str]]:
    """{task name: [question text per evaluated doc]} from lm-eval Task objects (`TaskManager.load(...)["tasks"]`)."""
    out = {}
    for name, task in sorted(loaded_tasks.items()):
        texts = []
        for doc in task.eval_docs:
            if task.should_decontaminate():
                texts.append(str(task.doc_to_decontamination_query(doc)))
            else:
                texts.append(str(doc["question"]) if "question" in doc else str(task.doc_to_text(doc)))
        out[name] = texts
    return out


class BenchmarkIndex:
    """The benchmark questions' word n-grams, for looking up which questions a training text overlaps."""

    def __init__(self, questions: dict[str, list[str]], n: int = 8):
        self.n, self.questions = n, questions
        self.index = defaultdict(set)  # n-gram -> {(task, doc index)}
        self.sizes: set[int] = set()
        for task, texts in questions.items():
            for i, text in enumerate(texts):
                grams = ngrams(text, n)
                if any(len(g.split()) < MIN_WORDS for g in grams):  # a one- or two-word question matches anything
                    continue
                self.sizes |= {len(g.split()) for g in grams}
                for gram in grams:
                    self.index[gram].add((task, i))

    def hits(self, text: str) -> dict[str, dict[int, str]]:
        """{task: {doc index: the first shared n-gram}} for a training text."""
        hits = defaultdict(dict)
        for size in self.sizes:
            for gram in ngrams(text, size) & self.index.keys():
                for task, doc in self.index[gram]:
                    hits[task].setdefault(doc, gram)
        return hits


class Flagged:
    """The rows found overlapping, per task: the report's body."""

    def __init__(self, index: BenchmarkIndex):
        self.index = index
        self.tasks = {task: {"questions": len(texts), "overlapping_questions": set(), "rows": []}
                      for task, texts in index.questions.items()}
        self.checked = 0

    def check(self, label: str, row_number: int, row) -> bool:
        """Whether the row overlaps a benchmark question (and note where)."""
        self.checked += 1
        hits = self.index.hits(row_text(row))
        for task, docs in hits.items():
            self.tasks[task]["overlapping_questions"] |= set(docs)
            self.tasks[task]["rows"].append({"file": label, "row": row_number, "docs": sorted(docs),
                                             "ngram": docs[min(docs)]})
        return bool(hits)

    def result(self, files: list[str], dropped: list[str] | None = None) -> dict:
        tasks = {task: {**entry, "overlapping_questions": len(entry["overlapping_questions"])}
                 for task, entry in self.tasks.items()}
        out = {"ngram": self.index.n, "training_rows": self.checked, "files": files, "tasks": tasks}
        return out if dropped is None else {**out, "action": "drop", "dropped": dropped}


def report(train: dict[str, list], questions: dict[str, list[str]], n: int = 8) -> dict:
    """train: {label (file): rows}. Per task: questions with an overlap, and the flagged rows (label, 1-based row)."""
    flagged = Flagged(BenchmarkIndex(questions, n))
    for label, rows in train.items():
        for row_number, row in enumerate(rows, start=1):
            flagged.check(label, row_number, row)
    return flagged.result(list(train))


class RowScreen:
    """The decontamination of a recipe's training rows, as `data.loading` calls it on every validated record
    (`data.sources.Record`: file, 1-based row, fields): notes each overlapping row and, with `drop`, says to
    leave it out. `result()` is the report (with `drop`: the rows removed, as file:row)."""

    def __init__(self, index: BenchmarkIndex, drop: bool):
        self.flagged, self.drop, self.files, self.dropped = Flagged(index), drop, [], []

    def __call__(self, record) -> bool:
        if record.source not in self.files:
            self.files.append(record.source)
        overlaps = self.flagged.check(record.source, record.row, record.data)
        if overlaps and self.drop:
            self.dropped.append(f"{record.source}:{record.row}")
        return overlaps and self.drop

    def result(self) -> dict:
        return self.flagged.result(self.files, self.dropped if self.drop else None)


def summary_lines(result: dict, max_rows: int = 5) -> list[str]:
    lines = [f"decontamination ({result['ngram']}-gram overlap, {result['training_rows']} training rows in "
             f"{', '.join(result['files'])}):"]
    if result.get("action") == "drop":
        shown = ", ".join(result["dropped"][:max_rows * 4])
        more = f" and {len(result['dropped']) - max_rows * 4} more" if len(result["dropped"]) > max_rows * 4 else ""
        lines.append(f"  decontaminate: drop removed {len(result['dropped'])} training rows before training"
                     + (f": {shown}{more}" if shown else ""))
    for task, entry in result["tasks"].items():
        lines.append(f"  {task}: {entry['overlapping_questions']} of {entry['questions']} questions overlap "
                     f"{len(entry['rows'])} training rows")
        for row in entry["rows"][:max_rows]:
            lines.append(f"    {row['file']} row {row['row']} ~ question {row['docs'][0]}: {row['ngram']!r}")
    return lines


def decontaminate(sources: list[str], protocol, task_dir: Path, n: int = 8, prepared=None) -> dict:
    """The report for training data files against the benchmarks of `protocol` (see `evaluation.protocol.Protocol`);
    `prepared`: its tasks from `harness.prepare_tasks`, if already built."""
    prepared = prepared or prepare_tasks(protocol, task_dir)
    questions = benchmark_questions(prepared.loaded["tasks"])
    return report({str(f): read_rows(f) for f in training_files(sources)}, questions, n)
