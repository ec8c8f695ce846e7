"""The callbacks every run adds to its trainer.

* `SampleGenerations`: what the model answers, not just its loss, every N steps. A loss curve can look fine while the
  model never learns to stop, or answers in the wrong format; a few fixed prompts answered greedily every
  `sample_generations_steps` steps (and once at the end) show it as it happens. The answers go to the log, to the
  `report_to` targets (as a text entry: TensorBoard's text tab, a W&B string; MLflow keeps only numbers and drops it)
  and to `<output_dir>/samples.jsonl`, which the model card reads. Greedy generation in eval mode draws no random
  numbers, so sampling leaves the training trajectory unchanged.
* `StopOnNonFiniteLoss`: stop at the first nan / inf loss or gradient, before the weights take the step. The Trainer
  keeps going on a nan loss: with `logging_nan_inf_filter` (on by default; instructkit turns it off) it even logs the
  average of earlier losses instead, and the next checkpoint saves nan weights. The gradients are checked after
  backward and clipping, before the optimizer step (`on_pre_optimizer_step`), and the logged loss and gradient norm
  (`on_log`: this also covers DeepSpeed, whose optimizer holds the gradients). Under fp16 only the loss is checked:
  its loss scaler overflows on purpose now and then and skips that step. On the first non-finite value the run ends
  with one message, nothing more is saved, and the newest checkpoint, written before the bad step, stays the last
  good one.
* `LearningSteps`: how many optimizer steps ran with a non-zero learning rate (the saved-weights check needs it).
* `DropPickledArgs`: no pickled `training_args.bin` (unsafe to load, holds every argument incl. credentials) in any
  checkpoint; resuming does not read it, config.yaml holds the settings.
* `BenchmarksDuringTraining`: the run's lm-eval benchmarks every `benchmark_steps` steps on the in-memory model, so a
  regression (MMLU falling while the loss falls) shows while the run goes on, not after it. On the main process,
  with `benchmark_limit`; the global RNG states and the train mode are restored afterwards, so the training goes on
  exactly as without it. The headline scores go through `Trainer.log` (the log, the `report_to` targets,
  `log_history` and so training_curves.png) as `benchmarks/<task>/<metric>`; step 0 is the before-training result;
  every step's full results are in `<output_dir>/benchmarks/steps/step-<N>/`.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from instructkit.data.splits import exact_match_rows
from instructkit.distributed import weights_for_generation, weights_sharded
from instructkit.errors import InstructkitError
from instructkit.evaluation.generation import generate
from instructkit.log import log
from instructkit.paths import write_atomic
from instructkit.training.outputs import SAMPLES_FILE, drop_pickled_args, last_complete


def _short(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


class SampleGenerations(TrainerCallback):
    """Every `every` optimizer steps and at the end of training, on the main process: greedy answers to `rows`
    ({prompt, target (optional)}), logged and appended to `<output_dir>/samples.jsonl`. Under ZeRO-3 / FSDP every
    process gathers the weights (`distributed.weights_for_generation`) and answers the same prompts."""

    def __init__(self, trainer, tokenizer, rows: list[dict], every: int, max_new_tokens: int):
        self.trainer, self.tokenizer, self.rows = trainer, tokenizer, rows
        self.every, self.max_new_tokens = every, max_new_tokens
        self.last_step = -1
        self.path = Path(trainer.args.output_dir) / SAMPLES_FILE

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step == 0:  # a fresh run (not a resume) starts the file anew
            write_atomic(self.path, "")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step % self.every == 0:
            self.sample(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.sample(args, state, control, model)

    def sample(self, args, state, control, model) -> list[dict] | None:
        if state.global_step == self.last_step:
            return None
        self.last_step = state.global_step
        sharded = weights_sharded(self.trainer)
        if not sharded and not state.is_world_process_zero:
            return None
        # Sharded: every process gathers the weights and answers the same prompts (greedy, so the same number of
        # forward passes everywhere: FSDP2 / ZeRO-3 keep per-process state of the forwards they saw, and a main-only
        # forward mid-training made the next backward's collectives differ between ranks: a hang, measured).
        with weights_for_generation(self.trainer) if sharded else contextlib.nullcontext(model) as full:
            if full is None:
                return None
            answers = generate(full, self.tokenizer, [r["prompt"] for r in self.rows], self.max_new_tokens,
                               batch_size=len(self.rows))
        return self.write(args, state, control, model, answers) if state.is_world_process_zero else None

    def write(self, args, state, control, model, answers: list[dict]) -> list[dict]:
        samples = []
        for row, answer in zip(self.rows, answers):
            prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
            samples.append({"step": state.global_step, "prompt": prompt, "target": row.get("target"),
                            "text": answer["text"], "stopped": answer["stopped"]})
        earlier = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        write_atomic(self.path, earlier + "".join(json.dumps(s) + "\n" for s in samples))
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


def sample_rows(args, held_out, tokenizer) -> list[dict]:
    """The configured prompts (as user turns when the tokenizer has a chat template), else a seeded sample of the
    first held-out split's rows with their targets. `held_out`: the first held-out split or None."""
    if args.sample_generations_prompts:
        return [{"prompt": [{"role": "user", "content": p}] if tokenizer.chat_template else p}
                for p in args.sample_generations_prompts]
    return exact_match_rows(held_out, args.sample_generations_num) if held_out is not None else []


def add_sample_generations(trainer, args, held_out, tokenizer) -> SampleGenerations | None:
    """Attach `SampleGenerations` to `trainer` as `args` configure it; None when off or not possible (says why)."""
    if args.sample_generations_steps <= 0:
        return None
    rows = sample_rows(args, held_out, tokenizer)
    if not rows:
        log("sample generations skipped: the held-out data has no prompts with answers; set "
            "sample_generations_prompts")
        return None
    callback = SampleGenerations(trainer, tokenizer, rows, args.sample_generations_steps, args.eval_max_new_tokens)
    trainer.add_callback(callback)
    return callback


def nonfinite_gradients(model) -> bool:
    """Whether any local gradient holds nan or inf (one fused norm over all of them)."""
    import torch

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and not torch.isfinite(torch.nn.utils.get_total_norm(grads)).item()


def stop_message(what: str, step: int, output_dir: str, before_the_step: bool = True) -> InstructkitError:
    last, _ = last_complete(output_dir)
    if last is None:
        kept = "no checkpoint was saved (save_strategy: steps with save_steps keeps some)"
    elif before_the_step:
        kept = f"the last good checkpoint, {last}, is kept (nothing was saved after it)"
    else:  # seen in the log only: a checkpoint between two logging steps may already hold the bad weights
        kept = f"the newest checkpoint is {last} (it may postdate the first bad step when logging_steps > 1)"
    return InstructkitError(f"training stopped at step {step}: {what}, so the weights would be ruined from here on; "
                            f"{kept}.",
                            fix="lower learning_rate (or raise warmup_steps, keep max_grad_norm at 1.0, use bf16 "
                                "rather than fp16), then start over with a new --output_dir.")


class StopOnNonFiniteLoss(TrainerCallback):
    """Raises `InstructkitError` at the first nan / inf gradient or logged loss."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        # fp16's loss scaler overflows on purpose now and then: it skips that step and lowers the scale
        if model is not None and not args.fp16 and nonfinite_gradients(model):
            # global_step counts finished steps: this one would be global_step + 1
            raise stop_message("the loss or its gradients are not finite (nan/inf)", state.global_step + 1,
                               args.output_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss",) if args.fp16 else ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise stop_message(f"the logged {key} is {value}", state.global_step, args.output_dir,
                                   before_the_step=False)


class LearningSteps(TrainerCallback):
    """Counts the optimizer steps that ran with a non-zero learning rate (a warmup's first step runs at 0), so the
    saved-weights check knows whether training could have changed the weights at all."""

    def __init__(self):
        self.steps = 0

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None and max(group["lr"] for group in optimizer.param_groups) > 0:
            self.steps += 1

    def count(self, state) -> int:
        """This process's steps, or, for a resumed run, at least the logged steps before it that had one (the
        Trainer logs the learning rate each logged step ran with)."""
        logged = sum(1 for h in state.log_history if h.get("learning_rate", 0) > 0 and "loss" in h)
        return max(self.steps, logged)


class DropPickledArgs(TrainerCallback):
    """Keeps pickled arguments out of every checkpoint the Trainer writes."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            drop_pickled_args(Path(args.output_dir) / f"checkpoint-{state.global_step}")


def benchmark_logs(summary: dict) -> dict:
    """A benchmark summary (`measurements.benchmark_summary`) as log entries: `benchmarks/<task>/<metric>` for its
    headline scores (groups and lone tasks; MMLU's subjects stay in the step's benchmarks.json) and
    `benchmarks_runtime`, the seconds it took."""
    return {**{f"benchmarks/{key}": summary["scores"][key] for key in summary["headline"]},
            "benchmarks_runtime": summary["seconds"]}


class BenchmarksDuringTraining(TrainerCallback):
    """Every `every` optimizer steps (not the last: the after-training benchmarks follow it), on the main process,
    `run_at(step)` (a benchmark summary or None) logged through the trainer; at the start of a fresh run, the
    before-training summary `before()` as step 0."""

    def __init__(self, trainer, run_at: Callable[[int], dict | None], every: int, before: Callable[[], dict | None]):
        self.trainer, self.run_at, self.every, self.before = trainer, run_at, every, before
        self.seconds: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        before = self.before()
        if state.is_world_process_zero and state.global_step == 0 and before:
            self.trainer.log(benchmark_logs(before))

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if (not state.is_world_process_zero or self.every <= 0 or step % self.every or step >= state.max_steps):
            return
        summary = self.run_at(step)
        if summary is not None:
            self.seconds.append(summary["seconds"])
            log(f"benchmarks at step {step} ({summary['seconds']:.1f} s): " + ", ".join(
                f"{k} {summary['scores'][k]:.4f}" for k in summary["headline"]))
            should_log = control.should_log  # on_log clears it: the trainer's own loss line of this step must stay
            self.trainer.log(benchmark_logs(summary))
            control.should_log = self.trainer.control.should_log = should_log
