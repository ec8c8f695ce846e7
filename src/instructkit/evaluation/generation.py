"""Generation through the chat template, the one way instructkit answers prompts: held-out exact match, sample
generations during training, generation metrics, `instructkit chat / generate / serve` all call `generate`, so every
one of them sees prompts exactly as evaluated (left padding, answers cut at the template's end-of-turn token).

`instructkit serve` batches requests that each ask for more: their own token limit, stop strings, their text as it is
generated, their answer as soon as their row ends. `Row` says that per prompt; `RowTracker` does it inside the same
`model.generate` call (a per-row stopping criterion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from instructkit.chat_templates import stop_token_ids
from instructkit.errors import InstructkitError


def sampling(temperature: float = 0.0, top_p: float = 1.0) -> dict:
    """`model.generate` keywords: greedy at temperature 0 (reproducible), else sampling."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise InstructkitError(f"temperature {temperature} / top_p {top_p} out of range.",
                               fix="use temperature >= 0 (0 = greedy) and 0 < top_p <= 1.")
    return {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature, "top_p": top_p}


def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 32,
             batch_size: int = 64, progress: str | None = None, rows: list[Row] | None = None,
             **generate_kwargs) -> list[dict]:
    """Answers for chat prompts (message lists) or plain string prompts, in input order: greedy unless
    `generate_kwargs` say otherwise (`do_sample`, `temperature`, a `streamer` for one prompt, ...).

    Batches are left-padded, so every row's answer starts right after its own prompt; each answer is cut at the
    template's end-of-turn token. `progress`: show a progress bar with that description (rows done). `rows`: one
    `Row` per prompt (its own limit, stop strings, streamed text; see `RowTracker`).

    Each answer: text, stopped (ended its turn), finish_reason ("stop": end of turn or a stop string; "length"),
    prompt_tokens, completion_tokens.
    """
    import torch
    from transformers import StoppingCriteriaList

    stop_ids = stop_token_ids(tokenizer)  # the template's end-of-turn token first, then eos
    was_training, side = model.training, tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    out = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(conversations), desc=progress, unit="prompt")
    try:
        for start in range(0, len(conversations), batch_size):
            batch = conversations[start:start + batch_size]
            if isinstance(batch[0], str):  # plain prompt/completion data: no chat template
                enc = tokenizer(batch, padding=True, return_tensors="pt")
            else:
                enc = tokenizer.apply_chat_template(batch, add_generation_prompt=True, padding=True,
                                                    return_tensors="pt", return_dict=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
            kwargs, limit, tracker = {"do_sample": False, **generate_kwargs}, max_new_tokens, None
            if rows:
                tracker = RowTracker(tokenizer, rows[start:start + batch_size], enc["input_ids"].shape[1],
                                     prompt_tokens, stop_ids, max_new_tokens)
                limit = tracker.longest
                kwargs["stopping_criteria"] = StoppingCriteriaList([tracker])
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=limit, **kwargs, eos_token_id=stop_ids,
                                     pad_token_id=tokenizer.pad_token_id)
            generated = gen[:, enc["input_ids"].shape[1]:].tolist()
            if tracker is not None:
                out += tracker.results(generated)
            else:
                out += [answer_of(tokenizer, row, n, stop_ids) for row, n in zip(generated, prompt_tokens)]
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def answer_of(tokenizer, tokens: list[int], prompt_tokens: int, stop_ids: list[int], stop: tuple[str, ...] = ()) -> dict:
    """One answer from the tokens generated after its prompt: cut at the first end-of-turn / eos token, then before
    the first of the `stop` strings. Counts include the end-of-turn token (the model generated it)."""
    end = next((i for i, t in enumerate(tokens) if t in stop_ids), None)
    stopped = end is not None
    text = tokenizer.decode(tokens[:end] if stopped else tokens, skip_special_tokens=True)
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    if cut >= 0:
        text = text[:cut]
    n_generated = end + 1 if stopped else len(tokens) - tokens.count(tokenizer.pad_token_id)
    return {"text": text, "stopped": stopped, "finish_reason": "stop" if stopped or cut >= 0 else "length",
            "prompt_tokens": prompt_tokens, "completion_tokens": n_generated}


@dataclass
class Row:
    """What one prompt of a `generate` call asks for beyond the call's settings (`instructkit serve`'s requests)."""

    max_new_tokens: int | None = None                # its own limit (the call runs to the largest of its rows)
    stop: tuple[str, ...] = ()                       # end the answer before the first of these strings
    on_text: Callable[[str], None] | None = None     # each new piece of the answer's text, as it is generated
    on_done: Callable[[dict], None] | None = None    # the answer, as soon as this row ends (not when the batch does)
    cancelled: Callable[[], bool] | None = None      # true: end this row at the next token (its client went away)


class RowTracker:
    """A stopping criterion for `model.generate` that ends each row on its own terms and streams its text.

    transformers' streamers take one row (TextStreamer refuses a batch) and its `stop_strings` apply to every row of
    a batch alike; this criterion sees every row's tokens after each step, so a batch of requests with different
    limits, stop strings and streams runs as one left-padded `generate` call. A row ends at its end-of-turn token,
    its first stop string, its limit or its cancellation; `generate` pads it from then on. The text streamed is
    always a prefix of the final answer: pieces that may still change (an incomplete UTF-8 character, the start of
    a stop string) are held back, and the pieces add up to the answer's text.
    """

    def __init__(self, tokenizer, rows: list[Row], prompt_length: int, prompt_tokens: list[int],
                 stop_ids: list[int], max_new_tokens: int):
        self.tokenizer, self.rows, self.prompt_length = tokenizer, rows, prompt_length
        self.prompt_tokens, self.stop_ids = prompt_tokens, stop_ids
        self.limits = [r.max_new_tokens or max_new_tokens for r in rows]
        self.longest = max(self.limits)
        self.answers: list[dict | None] = [None] * len(rows)
        self.sent = [""] * len(rows)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids[:, self.prompt_length:].tolist()
        for i, tokens in enumerate(generated):
            if self.answers[i] is None:
                self.step(i, tokens)
        return torch.tensor([a is not None for a in self.answers], device=input_ids.device)

    def step(self, i: int, tokens: list[int]) -> None:
        row = self.rows[i]
        needs_text = row.on_text is not None or bool(row.stop)
        ended = tokens[-1] in self.stop_ids or len(tokens) >= self.limits[i] or bool(row.cancelled and row.cancelled())
        if not (ended or needs_text):
            return  # nothing to decode before the row ends
        answer = answer_of(self.tokenizer, tokens, self.prompt_tokens[i], self.stop_ids, row.stop)
        if ended or answer["finish_reason"] == "stop":
            self.finish(i, answer)
        elif row.on_text is not None:
            self.send(i, settled(answer["text"], row.stop))

    def finish(self, i: int, answer: dict) -> None:
        self.answers[i] = answer
        self.send(i, answer["text"])
        if self.rows[i].on_done is not None:
            self.rows[i].on_done(answer)

    def send(self, i: int, text: str) -> None:
        if self.rows[i].on_text is not None and len(text) > len(self.sent[i]) and text.startswith(self.sent[i]):
            self.rows[i].on_text(text[len(self.sent[i]):])
            self.sent[i] = text

    def results(self, generated: list[list[int]]) -> list[dict]:
        """Every row's answer, after `generate` returned (a row it never showed this criterion ends here)."""
        for i, tokens in enumerate(generated):
            if self.answers[i] is None:
                self.finish(i, answer_of(self.tokenizer, tokens, self.prompt_tokens[i], self.stop_ids,
                                         self.rows[i].stop))
        return list(self.answers)


def settled(text: str, stop: tuple[str, ...]) -> str:
    """The part of a growing answer that cannot change: without a trailing incomplete character (decoded as U+FFFD)
    and without an ending that may be the start of a stop string."""
    text = text.rstrip("\ufffd")
    hold = max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return text[:len(text) - hold]


def generate_on_all_processes(model, tokenizer, prompts: list, max_new_tokens: int = 32, batch_size: int = 64) -> list[dict]:
    """`generate`, the prompts shared out over the launch's processes and gathered back in order on every rank.

    Every process must call it (DDP, DeepSpeed); each needs the full weights (see `distributed.weights_for_generation`).
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    if state.num_processes == 1:
        return generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    # padding gives every rank the same number of prompts; the copies at the end are cut off after the gather
    with state.split_between_processes(prompts, apply_padding=True) as mine:
        answers = generate(model, tokenizer, mine, max_new_tokens, batch_size)
    return gather_object(answers)[:len(prompts)]
