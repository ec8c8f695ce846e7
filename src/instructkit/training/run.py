"""What every recipe run does around its trainer, once: parse the config, prepare the output dir (finished runs kept,
unfinished ones resumed), check what TRL prepared, measure before and after, save.

`Run` holds what supervised and preference training share; `SFTRun` (training.sft) and `DPORun` (training.dpo) add
what differs: the trainer's config class, the data kind, the loss settings, the checks of the prepared rows and
what is measured after training. A recipe calls each step itself, so its loop reads top to bottom. A run's output
dir holds the model (or adapter), tokenizer + chat template, `config.yaml` (the resolved config, written once when
the run starts, credentials redacted) and `metrics.json` (training metrics, held-out exact match before and after,
data counts, machine, timing), plus for people to read: `README.md` (model card), `training_curves.png` and
`samples.jsonl`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from instructkit.config.arguments import InstructkitArguments
from instructkit.config.parsing import parse_args
from instructkit.config.resolved import RecipeConfig, resolve_chat_template, resolve_data_processes, resolve_model
from instructkit.distributed import (check_launch, enable_fsdp_on_cpu, format_launch, launch_summary, machine_summary,
                                     sharding, use_all_cpu_cores)
from instructkit.errors import InstructkitError
from instructkit.evaluation.harness import resolve_data_dir
from instructkit.log import is_main_process, log
from instructkit.modeling.files import check_local_path
from instructkit.paths import write_atomic
from instructkit.training import curves, measurements, model_card, preflight
from instructkit.training.callbacks import (
    BenchmarksDuringTraining,
    DropPickledArgs,
    LearningSteps,
    StopOnNonFiniteLoss,
    add_sample_generations,
    benchmark_logs,
)
from instructkit.training.faults import StopOnTerminate, final_save, guard_checkpoint_saves, lock_output_dir
from instructkit.training.outputs import FINAL_SAVE_MARKER, METRICS_FILE, check_output_dir, prepare_output_dir


def parse_config(trainer_config_class, argv=None, default_config=None, fixed: dict | None = None,
                 check_output: bool = True) -> RecipeConfig:
    """YAML config + `--key value` overrides, every problem reported at once, then the model keys resolved for this
    machine and launch (`resolve_model`); the model / benchmark paths and (`check_output`) output_dir are checked
    before anything loads. `fixed`: settings the recipe decides (e.g. sft_qlora: use_peft and load_in_4bit true)."""
    from trl import ModelConfig

    parsed = parse_args((InstructkitArguments, trainer_config_class, ModelConfig), argv, default_config, fixed)
    config = RecipeConfig(*parsed, recipe=Path(default_config).stem if default_config else "recipe")
    # The Trainer's own set-up of the process group (DDP over gloo on CPU, DeepSpeed, ...) must come first:
    # any earlier bare PartialState() would pin this process to a single-process state.
    _ = config.training.device
    enable_fsdp_on_cpu()  # before the trainer's Accelerator exists: an FSDP launch on CPU runs FSDP, not DDP
    check_local_path(config.model.model_name_or_path, "model_name_or_path")
    check_local_path(config.script.tokenizer_name_or_path, "tokenizer_name_or_path")
    measurements.check_benchmark_settings(config.script)
    if config.script.eval_benchmarks:  # a missing benchmark data dir fails now, not after training
        resolve_data_dir(config.script.benchmark_data_dir)
    if check_output:
        if is_main_process() and not Path(config.training.output_dir).is_file():
            lock_output_dir(config.training.output_dir)  # a second run into it is refused until this one ends
        check_output_dir(config.training, config.script.overwrite_output_dir)
    use_all_cpu_cores()
    log(f"{config.recipe} on {machine_summary(config.training)} -> {config.training.output_dir}")
    config = resolve_model(resolve_chat_template(config))
    check_launch(config.model)
    return config


def check_saved_weights(out: Path, stepped: int, steps: int = 0, warmup_steps: float = 0) -> None:
    """What was saved loads and holds the training: a full model file, or LoRA weights that are not empty and, once an
    optimizer step with a non-zero learning rate ran (`stepped` of all `steps`), not all zero. An adapter no such step
    changed (a one-step run whose warmup starts at 0) is logged, not refused. The fix named is the launch's: ZeRO-3
    without a 16-bit gather on save writes neither a model file nor adapter weights, silently."""
    from safetensors import safe_open

    fix = {"zero3": "with DeepSpeed ZeRO-3 set zero3_save_16bit_model: true in the accelerate config (accelerate_"
                    "configs/deepspeed_zero3.yaml does).",
           "fsdp": "with FSDP set fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config (accelerate_configs/"
                   "fsdp.yaml does)."}.get(sharding(), "check the free space and the files in that folder, then run "
                                                       "again; if it persists, report it with the launch command.")
    adapter = out / "adapter_model.safetensors"
    if adapter.is_file():
        with safe_open(str(adapter), "pt") as f:
            lora_b = [f.get_tensor(k) for k in f.keys() if "lora_B" in k]
        if not lora_b or any(t.numel() == 0 for t in lora_b):
            raise InstructkitError(f"the LoRA adapter saved to {adapter} is empty.", fix=fix)
        if all(not t.any() for t in lora_b):
            if not stepped:
                log(f"note: the adapter in {adapter} holds its initial weights (every lora_B is zero): none of the "
                    f"{steps} optimizer step(s) ran with a non-zero learning rate (warmup_steps {warmup_steps:g} "
                    "raises it from 0); train for more steps than the warmup to change the weights")
                return
            raise InstructkitError(
                f"the LoRA adapter saved to {adapter} holds its initial weights (every lora_B is zero) although "
                f"{stepped} optimizer step{'s' * (stepped > 1)} ran with a non-zero learning rate.",
                fix=fix if sharding() else "the adapter received no gradient: check with instructkit inspect that "
                                           "the rows have trained tokens, and that grad_norm in metrics.json is not 0.")
    elif not list(out.glob("model*.safetensors")):
        raise InstructkitError(f"no model.safetensors was written to {out} (only sharded checkpoints).", fix=fix)


class Run:
    """One recipe run from its resolved config: `start` it, `prepare` the trainer, `measure` before and after
    `trainer.train()`, then `save`."""

    def __init__(self, config: RecipeConfig, data, tokenizer):
        self.config, self.data, self.tokenizer = config, data, tokenizer
        self.splits = dict(data.splits)  # what the trainer gets (SFT: rows instructkit tokenized, when it does)
        self.started = time.time()
        self.metrics: dict = {"recipe": config.recipe, "machine": machine_summary(config.training), "exact_match": {}}
        self.resume_from: str | None = None
        self.learning_steps = LearningSteps()

    @classmethod
    def resolve(cls, config: RecipeConfig, data, tokenizer) -> RecipeConfig:
        """The config's final form for this data and tokenizer (nothing to add here; SFT sets its loss)."""
        return config

    def trainer_splits(self) -> dict:
        """The splits the trainer gets (the validated rows here; SFT may tokenize them itself)."""
        return dict(self.data.splits)

    @classmethod
    def start(cls, config: RecipeConfig, data, tokenizer):
        """The run on the final config, its trainer's data ready: output_dir made ready (resume point found),
        config.yaml written once."""
        config = resolve_data_processes(cls.resolve(config, data, tokenizer), len(data.train))
        run = cls(config, data, tokenizer)
        run.splits = run.trainer_splits()
        run.resume_from = prepare_output_dir(run.config.training, run.config.script.overwrite_output_dir,
                                             run.config.as_dict(), log)
        run.metrics["resumed_from"] = run.resume_from
        return run

    @property
    def train_dataset(self):
        """The trainer's training data."""
        return self.splits["train"]

    @property
    def eval_dataset(self):
        """The trainer's eval data: the first held-out split when the config evaluates during training."""
        if self.config.training.eval_strategy == "no":
            return None
        return next((split for name, split in self.splits.items() if name != "train"), None)

    @property
    def data_collator(self):
        """None: the trainer builds its own."""
        return None

    # -- before the first step ----------------------------------------------------------------------------------
    def prepare(self, trainer) -> None:
        """Counts of what TRL's preparation dropped or cut, checks of the prepared rows, the decontamination report,
        and the callbacks every run has (sample generations, stop on nan/inf, no pickles in checkpoints, learning
        steps counted, SIGTERM saves and stops); a full disk while saving a checkpoint ends in one message."""
        self.metrics["launch"] = launch_summary(trainer)  # what accelerate runs: FSDP / DeepSpeed / DDP, processes
        log(format_launch(self.metrics["launch"]))
        self.report_dropped(trainer)
        log(preflight.summary(self.check(trainer)))
        self.metrics["decontamination"] = self.data.report.decontamination  # screened while the data loaded
        add_sample_generations(trainer, self.config.script, self.data.test, self.tokenizer)
        if self.config.script.eval_benchmarks:
            trainer.add_callback(BenchmarksDuringTraining(
                trainer, lambda step: measurements.benchmarks_at_step(trainer, self.tokenizer, self.config, step),
                self.config.script.benchmark_steps, lambda: self.metrics.get("benchmarks_before")))
        trainer.add_callback(StopOnNonFiniteLoss())
        trainer.add_callback(DropPickledArgs())
        trainer.add_callback(self.learning_steps)
        trainer.add_callback(StopOnTerminate())  # last: it ends the run once the others have seen the save
        guard_checkpoint_saves(trainer)

    def check(self, trainer) -> dict:
        return preflight.check(trainer, self.data.report)

    def report_dropped(self, trainer) -> None:
        """Count the rows TRL's preparation removed, which it does silently (rows whose prompt fills max_length)."""
        max_length, rows = trainer.args.max_length, len(self.data.train)
        dropped = rows - len(trainer.train_dataset)
        if dropped > 0:
            self.data.report.skipped[f"prompt fills max_length={max_length}, no trained token left"] += dropped
            log(f"data: {dropped} of {rows} training rows dropped: their prompt fills max_length={max_length}, "
                "leaving no trained token (raise max_length to keep them)")

    # -- measured before and after training ---------------------------------------------------------------------
    def measure(self, trainer, stage: str) -> dict:
        """Held-out exact match at `stage` ('before' or 'after' training; every process answers its share); after
        training also what `after_training` adds. Logged, kept for metrics.json, and returned."""
        results = measurements.held_out_exact_match(trainer, self.tokenizer, self.data.held_out, self.config.script)
        self.metrics["exact_match"][stage] = results
        if stage == "after":
            log(measurements.format_exact_match("before training", self.metrics["exact_match"].get("before", {})))
            log(measurements.format_exact_match("after training ", results))
            self.after_training(trainer)
        else:
            log(measurements.format_exact_match(f"{stage} training", results))
            self.before_training(trainer)
        return results

    def before_training(self, trainer) -> None:
        """The benchmarks on the starting model (main process), the base of the after-training deltas; not when
        resuming (the model is no longer the starting one)."""
        if not self.config.script.eval_benchmarks or not is_main_process():
            return
        if self.resume_from:
            log(f"benchmarks before training skipped: resuming from {self.resume_from} (the starting model is gone); "
                "the after-training results get no deltas")
            return
        self.metrics["benchmarks_before"] = measurements.benchmarks_before_training(trainer, self.tokenizer,
                                                                                    self.config)

    def after_training(self, trainer) -> None:
        """Generation metrics (every process, with sharded weights gathered) and lm-eval benchmarks (main process)
        on the in-memory model, as configured."""
        args = self.config.script
        if args.eval_generation_metrics:
            self.metrics["generation_metrics"] = measurements.generation_metrics(
                trainer, self.tokenizer, self.data.held_out, args)
        if args.eval_benchmarks and is_main_process():
            after = measurements.benchmarks_after_training(trainer, self.tokenizer, self.config,
                                                           self.metrics.get("benchmarks_before"))
            self.metrics["benchmarks"] = after
            if after is not None:  # the last point of the benchmark curves (training_curves.png)
                trainer.state.log_history.append({"step": trainer.state.global_step, **benchmark_logs(after)})

    # -- saved ------------------------------------------------------------------------------------------------
    def save(self, trainer, result) -> Path:
        """Model/adapter + tokenizer (every rank takes part, as ZeRO-3 needs), then metrics, curves and the model
        card (main process). `result`: what `trainer.train()` returned. Until all of it is written, output_dir holds
        FINAL_SAVE_MARKER: a save cut short (a kill, a full disk) leaves a run that resumes, not half a model."""
        out = Path(self.config.training.output_dir)
        main = trainer.accelerator.is_main_process
        with final_save(trainer, out):
            if main:
                write_atomic(out / FINAL_SAVE_MARKER, "")
            trainer.save_model(str(out))
            if main:
                check_saved_weights(out, self.learning_steps.count(trainer.state), trainer.state.global_step,
                                    trainer.args.warmup_steps)
                (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.yaml holds the same settings
                self.tokenizer.save_pretrained(out)
                self.metrics["launch"] = launch_summary(trainer)  # again: now the model is wrapped (FSDP, DeepSpeed)
                self.metrics.update(trainer=type(trainer).__name__, train=result.metrics,
                                    log_history=trainer.state.log_history, data=self.data.report.as_dict(),
                                    seconds=round(time.time() - self.started, 1))
                write_atomic(out / METRICS_FILE, json.dumps(self.metrics, indent=2, default=str) + "\n")
                curves.plot_training_curves(out)  # training_curves.png, then README.md (the model card) shows it
                model_card.write_model_card(out)
                (out / FINAL_SAVE_MARKER).unlink()
        trainer.accelerator.wait_for_everyone()
        saved = "adapter" if (out / "adapter_model.safetensors").is_file() else "model"
        log(f"saved to {out}: {saved}, tokenizer, config.yaml, metrics.json "
            f"({round(time.time() - self.started, 1)} s in all)")
        return out
