"""What every recipe run does around training: parse, say where it runs, measure before/after, save.

`Run` holds the parsed config and the shared steps, so a recipe is one call per step and spells out only
what is its own (how the model is loaded). A run's output dir holds the model (or adapter), tokenizer +
chat template, `config.yaml` (resolved config, secrets redacted) and `metrics.json` (training metrics,
held-out exact match before and after, data counts, machine, timing), plus for people to read: `README.md` (model
card), `training_curves.png` and `samples.jsonl` (instructkit.model_card, .plots, .callbacks).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

from instructkit import data, modeling, nonfinite, outputs, preflight
from instructkit.config import InstructkitArguments, parse_recipe_args, resolved_config, save_resolved_config


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def log(message: str) -> None:
    """Print on the main process only (one line per event, not one per rank)."""
    if is_main_process():
        print(f"[instructkit] {message}", flush=True)


def use_all_cpu_cores() -> None:
    """On CPU, give each process its share of the cores (cores / local processes).

    `accelerate launch` sets OMP_NUM_THREADS=1 unless told otherwise, which halves a 2-core CPU run.
    INSTRUCTKIT_NUM_THREADS overrides the choice.
    """
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available():
        return
    wanted = os.environ.get("INSTRUCTKIT_NUM_THREADS")
    if wanted is None:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", PartialState().num_processes))
        wanted = max(1, len(os.sched_getaffinity(0)) // max(local, 1))
    torch.set_num_threads(int(wanted))


def machine_summary(training_args) -> dict:
    import torch
    from accelerate import PartialState

    state = PartialState()
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    return {"device": str(state.device), "processes": state.num_processes, "precision": precision,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}


def format_exact_match(label: str, results: dict) -> str:
    if not results:
        return f"{label}: exact match not measured"
    return f"{label}: " + ", ".join(f"{split} exact match {r['exact_match']:.1%} (n={r['n']}, stopped {r['stopped']:.0%})"
                                    for split, r in results.items())


def check_saved_weights(out: Path, trained: bool) -> None:
    """What was saved loads and holds the training: a full model file, or LoRA weights that are not empty and (after
    training) not all zero. ZeRO-3 without a 16-bit gather on save writes neither, silently."""
    from safetensors import safe_open

    from instructkit.errors import InstructkitError

    fix = "with DeepSpeed ZeRO-3 set zero3_save_16bit_model: true in the accelerate config (accelerate_configs/" \
          "deepspeed_zero3.yaml does)."
    adapter = out / "adapter_model.safetensors"
    if adapter.is_file():
        with safe_open(str(adapter), "pt") as f:
            lora_b = [f.get_tensor(k) for k in f.keys() if "lora_B" in k]
        if not lora_b or any(t.numel() == 0 for t in lora_b):
            raise InstructkitError(f"the LoRA adapter saved to {adapter} is empty.", fix=fix)
        if trained and all(not t.any() for t in lora_b):
            raise InstructkitError(f"the LoRA adapter saved to {adapter} holds its initial weights (every lora_B is "
                                   "zero) although training ran.", fix=fix)
    elif not list(out.glob("model*.safetensors")):
        raise InstructkitError(f"no model.safetensors was written to {out} (only sharded checkpoints).", fix=fix)


@contextlib.contextmanager
def weights_for_generation(trainer):
    """The trainer's model with its full weights on this process, for `generate`.

    Under ZeRO-3 each process holds a shard of every weight: they are gathered for the duration (through TRL's
    `unwrap_model_for_generation` once DeepSpeed wraps the model, directly before training starts).
    """
    from instructkit.launch import sharding

    if sharding() != "zero3":
        yield trainer.model
        return
    import deepspeed
    from trl.models.utils import unwrap_model_for_generation

    if isinstance(trainer.model_wrapped, deepspeed.DeepSpeedEngine):
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model:
            yield model
    else:
        with deepspeed.zero.GatheredParameters(list(trainer.model.parameters())):
            yield trainer.model


class Run:
    """One recipe run: parsed arguments plus the steps every SFT-style recipe shares."""

    def __init__(self, recipe: str, trainer_config_class, default_config: Path, args=None, preference: bool = False,
                 writes_output: bool = True):
        from trl import ModelConfig

        self.recipe, self.preference = recipe, preference  # preference: DPO-style pairs instead of instructions
        self.parsed = parse_recipe_args((InstructkitArguments, trainer_config_class, ModelConfig),
                                        args=args, default_config=default_config)
        self.args, self.training_args, self.model_args = self.parsed
        # The Trainer's own set-up of the process group (DDP over gloo on CPU, DeepSpeed, ...) must come first:
        # any earlier bare PartialState() would pin this process to a single-process state.
        _ = self.training_args.device
        modeling.check_local_path(self.model_args.model_name_or_path, "model_name_or_path")
        modeling.check_local_path(self.args.tokenizer_name_or_path, "tokenizer_name_or_path")
        if self.args.eval_benchmarks:  # a missing benchmark data dir fails now, not after training
            from instructkit.benchmarks import resolve_data_dir

            resolve_data_dir(self.args.benchmark_data_dir)
        self.start = time.time()
        use_all_cpu_cores()
        self.metrics: dict = {"recipe": recipe, "machine": machine_summary(self.training_args)}
        log(f"{recipe} on {self.metrics['machine']} -> {self.training_args.output_dir}")
        # a finished run is refused, an unfinished one with the same config resumes (instructkit.outputs)
        self.resume_from = outputs.prepare_output_dir(self.training_args, self.args.overwrite_output_dir,
                                                      resolved_config(*self.parsed), log) if writes_output else None
        self.metrics["resumed_from"] = self.resume_from

    # -- steps ------------------------------------------------------------------------------------------
    def load_data(self):
        """Validated rows in TRL's forms, with held-out split(s)."""
        load = data.load_preference_data if self.preference else data.load_sft_data
        self.dataset, self.data_report = load(self.args, seed=self.training_args.seed)
        for line in self.data_report.lines():
            log(line)
        return self.dataset

    def load_tokenizer(self):
        """Tokenizer + chat template (after `load_data`): sets the loss mask for the data's format and template.

        `self.new_tokens`: ids of control tokens the template added (pass to `modeling.lora_config`).
        """
        self.tokenizer, self.new_tokens = modeling.load_tokenizer(self.model_args, self.args, self.training_args)
        if self.new_tokens:
            log(f"chat template {self.args.chat_template}: added tokens "
                f"{self.tokenizer.convert_ids_to_tokens(self.new_tokens)} (their embeddings are trained)")
        if not self.preference:  # DPO's loss covers the answers by construction
            data.configure_loss(self.training_args, self.data_report, self.tokenizer)
            data.defer_padding_free(self.training_args)
        return self.tokenizer

    def trainer_datasets(self) -> dict:
        """Preference runs always get the held-out pairs: reward accuracy on them is measured after training."""
        wants_eval = self.preference or self.training_args.eval_strategy != "no"
        return {"train_dataset": self.dataset["train"], "eval_dataset": self.dataset.get("test") if wants_eval else None}

    def train(self, trainer):
        """Held-out exact match before, training, exact match after; prints both. Sample generations as it trains."""
        from instructkit.callbacks import add_sample_generations

        add_sample_generations(trainer, self.args, self.dataset, self.tokenizer)
        data.apply_padding_free(trainer)  # when load_tokenizer deferred it
        data.report_dropped(self.dataset, trainer, self.data_report)
        check = preflight.check_preference if self.preference else preflight.check
        log(preflight.summary(check(trainer, self.data_report)))
        before = self.exact_match(trainer)
        log(format_exact_match("before training", before))
        self.check_contamination()
        trainer.add_callback(nonfinite.stop_on_nonfinite_loss())
        trainer.add_callback(outputs.checkpoint_callback())
        result = trainer.train(resume_from_checkpoint=self.resume_from)
        after = self.exact_match(trainer)
        log(format_exact_match("before training", before))
        log(format_exact_match("after training ", after))
        self.metrics.update(train=result.metrics, exact_match={"before": before, "after": after},
                            log_history=trainer.state.log_history)
        self.after_training_evaluations(trainer)
        if self.preference and trainer.eval_dataset is not None:
            held_out = trainer.evaluate()
            self.metrics["eval"] = held_out
            log("held-out preference pairs: " + ", ".join(
                f"{k.removeprefix('eval_')} {v:.3f}" for k, v in held_out.items()
                if k in ("eval_rewards/accuracies", "eval_rewards/margins", "eval_loss")))
        return result

    def save(self, trainer) -> Path:
        """Model/adapter + tokenizer (every rank takes part, as ZeRO-3 needs), then config + metrics (main only)."""
        out = Path(self.training_args.output_dir)
        trainer.save_model(str(out))
        if trainer.accelerator.is_main_process:
            check_saved_weights(out, trained=trainer.state.global_step > 0)
            # config.yaml records the same settings readably; no pickle in what users share or load
            (out / "training_args.bin").unlink(missing_ok=True)
            self.tokenizer.save_pretrained(out)
            save_resolved_config(out / "config.yaml", *self.parsed)
            self.metrics.update(data=self.data_report.as_dict(), seconds=round(time.time() - self.start, 1))
            (out / "metrics.json").write_text(json.dumps(self.metrics, indent=2, default=str) + "\n")
            from instructkit import model_card, plots

            plots.plot_training_curves(out)  # training_curves.png, then README.md (the model card) shows it
            model_card.write_model_card(out)
        trainer.accelerator.wait_for_everyone()
        log(f"saved to {out}: {'adapter' if self.model_args.use_peft and self.recipe != 'sft_full' else 'model'}, tokenizer, config.yaml, "
            f"metrics.json ({round(time.time() - self.start, 1)} s in all)")
        return out

    # -- helpers ----------------------------------------------------------------------------------------
    def exact_match(self, trainer) -> dict:
        """{split: result} on every held-out split ({} when disabled). Every process answers its share of the rows."""
        from instructkit.evaluation import exact_match

        if not self.args.eval_exact_match:
            return {}
        results = {}
        with weights_for_generation(trainer) as model:
            for split in (s for s in self.dataset if s != "train"):
                rows = data.exact_match_rows(self.dataset[split], self.args.eval_max_samples)
                if rows:
                    results[split] = exact_match(model, self.tokenizer, rows, self.args.eval_max_new_tokens,
                                                 self.args.eval_batch_size)
        return results

    # -- benchmarks and generation metrics (instructkit.benchmarks, .decontamination, .generation_metrics) ------
    def benchmark_protocol(self):
        from instructkit.benchmarks import Protocol

        a = self.args
        return Protocol(tasks=list(a.eval_benchmarks), data_dir=a.benchmark_data_dir,
                        num_fewshot=a.benchmark_num_fewshot, limit=a.benchmark_limit,
                        batch_size=a.benchmark_batch_size, apply_chat_template=a.benchmark_chat_template,
                        fewshot_as_multiturn=a.benchmark_fewshot_as_multiturn)

    def check_contamination(self) -> None:
        """With benchmarks configured: n-gram overlap of the training data with their questions, before training."""
        if not self.args.eval_benchmarks or not is_main_process():
            return
        from instructkit import decontamination as dc
        from instructkit.benchmarks import open_tasks, prepare_tasks
        from instructkit.errors import InstructkitError

        names, manager = prepare_tasks(self.benchmark_protocol(), self.benchmark_dir() / "lm_eval_tasks")
        questions = dc.benchmark_questions(open_tasks(manager, names)["tasks"])
        sources = [m["path"] for m in self.args.dataset_mixture or []] or [self.args.dataset_name]
        try:
            train = {str(f): dc.read_rows(f) for f in dc.training_files(sources)}
        except InstructkitError:  # a hub data set: its loaded training rows, numbered as loaded
            train = {f"{self.args.dataset_name} (loaded train split)": list(self.dataset["train"])}
        result = dc.report(train, questions, self.args.decontamination_ngram)
        for line in dc.summary_lines(result):
            log(line)
        self.metrics["decontamination"] = result

    def benchmark_dir(self) -> Path:
        return Path(self.training_args.output_dir) / "benchmarks"

    def after_training_evaluations(self, trainer) -> None:
        """Generation metrics and lm-eval benchmarks on the in-memory trained model, main process only."""
        if not is_main_process():
            return
        if self.args.eval_generation_metrics:
            from instructkit.generation_metrics import format_generation_metrics, heldout_generation_metrics

            results = {}
            for split in (s for s in self.dataset if s != "train"):
                rows = data.exact_match_rows(self.dataset[split], self.args.eval_max_samples)
                if rows:
                    results[split] = heldout_generation_metrics(trainer.model, self.tokenizer, rows,
                                                                self.args.eval_max_new_tokens, self.args.eval_batch_size)
            self.metrics["generation_metrics"] = results
            log(format_generation_metrics("after training", results))
        from instructkit.launch import weights_sharded

        if self.args.eval_benchmarks and weights_sharded(trainer):
            log("benchmarks skipped after training: the weights are sharded (FSDP / ZeRO-3), so one process cannot "
                f"run the model; evaluate the saved output: instructkit eval --models {self.training_args.output_dir}")
        elif self.args.eval_benchmarks:
            from instructkit.benchmark_results import markdown_table, scores
            from instructkit.benchmarks import evaluate

            report = evaluate(self.benchmark_protocol(), self.benchmark_dir(), model=trainer.model,
                              tokenizer=self.tokenizer)
            log("benchmarks (lm-evaluation-harness), after training:\n" + markdown_table(report))
            self.metrics["benchmarks"] = {"scores": {f"{t}/{m}": v for (t, m), v in scores(report).items()},
                                          "protocol": report["protocol"], "seconds": report["seconds"]}
