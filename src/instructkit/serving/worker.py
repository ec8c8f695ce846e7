"""The one thread that runs the model: it takes the requests waiting, answers them together in one left-padded
`evaluation.generation.generate` call, and hands each request its text and answer as they come.

The HTTP side never runs the model: it puts a `Job` in the worker's bounded waiting list (full: the request is
refused at once, 503) and awaits the job's events on its own event loop. Requests that can share a `generate` call
are batched: greedy requests all together, sampled ones with equal temperature / top_p together; a sampled request
with a `seed` runs alone, so its answer does not depend on what else was waiting. Each row ends on its own (its end
of turn, stop strings, max_tokens, or its client going away) and its answer is sent as soon as it ends, not when the
batch does.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass, field
from functools import partial

from instructkit.evaluation.generation import Row, generate


class QueueFull(Exception):
    """Every waiting slot is taken: answer 503 and let the client retry."""


class ShuttingDown(Exception):
    """The server is stopping: no new work."""


@dataclass
class Job:
    """One request for the worker. Its events arrive on `events` (an asyncio queue of `loop`):
    ("text", piece) while streaming, then ("done", answer) or ("error", message)."""

    prompt: list[dict] | str
    max_tokens: int
    sampling: dict                 # `evaluation.generation.sampling(...)`
    loop: asyncio.AbstractEventLoop
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    answered: bool = False

    def post(self, kind: str, value) -> None:
        """From the worker thread: an event onto the request's event loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass

    @property
    def batch_key(self):
        """Jobs with equal keys can share one `generate` call."""
        if not self.sampling.get("do_sample"):
            return ("greedy",)
        if self.seed is not None:
            return ("seeded", id(self))
        return ("sampled", self.sampling["temperature"], self.sampling["top_p"])


class Worker:
    """The model's thread. `submit` from any thread; `start` / `stop` once."""

    def __init__(self, model, tokenizer, max_batch_size: int = 16, max_waiting: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.max_waiting = max_batch_size, max_waiting
        self.waiting: deque[Job] = deque()
        self.running: list[Job] = []
        self.cond = threading.Condition()
        self.stopping = False
        self.stats = {"batches": 0, "answered": 0, "failed": 0, "largest_batch": 0}
        self.thread = threading.Thread(target=self.run, name="instructkit-model", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self.cond:
            if self.stopping:
                raise ShuttingDown()
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull()
            self.waiting.append(job)
            self.cond.notify()

    def load(self) -> dict:
        with self.cond:
            return {"waiting": len(self.waiting), "running": len(self.running), "max_waiting": self.max_waiting,
                    "max_batch_size": self.max_batch_size, **self.stats}

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new jobs, fail the waiting ones, end the running rows at their next token, join the thread."""
        with self.cond:
            self.stopping = True
            left, self.waiting = list(self.waiting), deque()
            for job in self.running:
                job.cancelled.set()
            self.cond.notify_all()
        for job in left:
            job.post("error", "the server is shutting down")
        if self.thread.is_alive():
            self.thread.join(timeout)

    def run(self) -> None:
        while True:
            batch = self.next_batch()
            if not batch:
                return
            self.answer(batch)

    def next_batch(self) -> list[Job]:
        """The oldest waiting job and up to max_batch_size - 1 others that can share its call ([] when stopping)."""
        with self.cond:
            while not self.stopping:
                self.waiting = deque(j for j in self.waiting if not j.cancelled.is_set())  # clients that left
                if self.waiting:
                    break
                self.cond.wait()
            if self.stopping:
                return []
            key = self.waiting[0].batch_key
            batch = [j for j in self.waiting if j.batch_key == key][:self.max_batch_size]
            for job in batch:
                self.waiting.remove(job)
            self.running = batch
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
            return batch

    def done(self, job: Job, *args) -> None:
        """A row's answer is complete: counted before it is posted, so /health never lags the answers clients hold."""
        job.answered = True
        self.stats["answered"] += 1
        job.post("done", *args)

    def answer(self, batch: list[Job]) -> None:
        import torch

        rows = [Row(max_new_tokens=j.max_tokens, stop=j.stop, on_text=partial(j.post, "text") if j.stream else None,
                    on_done=partial(self.done, j), cancelled=j.cancelled.is_set) for j in batch]
        try:
            if batch[0].seed is not None and batch[0].sampling.get("do_sample"):
                torch.manual_seed(batch[0].seed)
            generate(self.model, self.tokenizer, [j.prompt for j in batch], max(j.max_tokens for j in batch),
                     batch_size=len(batch), rows=rows, **batch[0].sampling)
        except Exception as err:  # noqa: BLE001 - one failed batch must not stop the server
            traceback.print_exc(file=sys.stderr)
            self.stats["failed"] += sum(not j.answered for j in batch)
            for job in (j for j in batch if not j.answered):
                job.post("error", f"generation failed: {type(err).__name__}: {err}")
        finally:
            with self.cond:
                self.running = []
                self.stats["batches"] += 1
