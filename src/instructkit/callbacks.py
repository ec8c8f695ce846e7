"""Sample generations during training: what the model answers, not just its loss, every N steps.

A loss curve can look fine while the model never learns to stop, or answers in the wrong format; a few fixed
prompts answered greedily every `sample_generations_steps` steps (and once at the end) show it as it happens.
The answers go to the log, to the `report_to` targets (as a text entry: TensorBoard's text tab, a W&B string;
MLflow keeps only numbers and drops it) and to `<output_dir>/samples.jsonl`, which the model card reads.

Greedy generation in eval mode draws no random numbers, so sampling leaves the training trajectory unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

SAMPLES_FILE = "samples.jsonl"


def _short(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


class SampleGenerations(TrainerCallback):
    """Every `every` optimizer steps and at the end of training, on the main process: greedy answers to `rows`
    ({prompt, target (optional)}), logged and appended to `<output_dir>/samples.jsonl`."""

    def __init__(self, trainer, tokenizer, rows: list[dict], every: int, max_new_tokens: int):
        self.trainer, self.tokenizer, self.rows = trainer, tokenizer, rows
        self.every, self.max_new_tokens = every, max_new_tokens
        self.last_step = -1
        self.path = Path(trainer.args.output_dir) / SAMPLES_FILE

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step == 0:  # a fresh run (not a resume) starts the file anew
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step % self.every == 0:
            self.sample(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.sample(args, state, control, model)

    def sample(self, args, state, control, model) -> list[dict] | None:
        from instructkit.evaluation import generate
        from instructkit.runs import log

        if not state.is_world_process_zero or state.global_step == self.last_step:
            return None
        self.last_step = state.global_step
        answers = generate(model, self.tokenizer, [r["prompt"] for r in self.rows], self.max_new_tokens,
                           batch_size=len(self.rows))
        samples = []
        for row, answer in zip(self.rows, answers):
            prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
            samples.append({"step": state.global_step, "prompt": prompt, "target": row.get("target"),
                            "text": answer["text"], "stopped": answer["stopped"]})
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(s) + "\n" for s in samples)
        log(f"samples at step {state.global_step}:\n" + "\n".join(
            f"  {_short(s['prompt'])!r} -> {_short(s['text'])!r}" + ("" if s["stopped"] else " (no end of turn)")
            + (f"  [target {_short(s['target'])!r}]" if s["target"] is not None else "") for s in samples))
        self.report(args, state, control, model, samples)
        return samples

    def report(self, args, state, control, model, samples: list[dict]) -> None:
        """The samples as one markdown table, to the `report_to` integrations only (not the progress bar)."""
        from transformers.integrations import get_reporting_integration_callbacks

        reporters = tuple(get_reporting_integration_callbacks(args.report_to))
        if not reporters:
            return
        cell = lambda text: _short(text, 200).replace("|", "\\|")  # noqa: E731
        table = "| prompt | answer | target |\n|---|---|---|\n" + "\n".join(
            f"| {cell(s['prompt'])} | {cell(s['text'])}{'' if s['stopped'] else ' …'} | {cell(s['target'] or '')} |"
            for s in samples)
        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, reporters):
                callback.on_log(args, state, control, logs={"samples": table}, model=model)


def sample_rows(args, dataset, tokenizer) -> list[dict]:
    """The configured prompts (as user turns when the tokenizer has a chat template), else a seeded sample of the
    first held-out split's rows with their targets."""
    from instructkit.data import exact_match_rows

    if args.sample_generations_prompts:
        return [{"prompt": [{"role": "user", "content": p}] if tokenizer.chat_template else p}
                for p in args.sample_generations_prompts]
    held_out = [split for split in dataset if split != "train"]
    return exact_match_rows(dataset[held_out[0]], args.sample_generations_num) if held_out else []


def add_sample_generations(trainer, args, dataset, tokenizer) -> SampleGenerations | None:
    """Attach `SampleGenerations` to `trainer` as `args` configure it; None when off or not possible (says why)."""
    from instructkit.launch import weights_sharded
    from instructkit.runs import log

    if args.sample_generations_steps <= 0:
        return None
    if weights_sharded(trainer):
        log("sample generations skipped: the weights are sharded (FSDP / ZeRO-3), so one process cannot generate")
        return None
    rows = sample_rows(args, dataset, tokenizer)
    if not rows:
        log("sample generations skipped: the held-out data has no prompts with answers; set "
            "sample_generations_prompts")
        return None
    callback = SampleGenerations(trainer, tokenizer, rows, args.sample_generations_steps, args.eval_max_new_tokens)
    trainer.add_callback(callback)
    return callback
