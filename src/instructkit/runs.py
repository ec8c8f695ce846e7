"""What every recipe run does around training: parse, say where it runs, measure before/after, save.

`Run` holds the parsed config and the shared steps, so a recipe is one call per step and spells out only
what is its own (how the model is loaded). A run's output dir holds the model (or adapter), tokenizer +
chat template, `config.yaml` (resolved config, secrets redacted) and `metrics.json` (training metrics,
held-out exact match before and after, data counts, machine, timing).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from instructkit import data, modeling, preflight
from instructkit.config import InstructkitArguments, parse_recipe_args, save_resolved_config


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


class Run:
    """One recipe run: parsed arguments plus the steps every SFT-style recipe shares."""

    def __init__(self, recipe: str, trainer_config_class, default_config: Path, args=None):
        from trl import ModelConfig

        self.recipe = recipe
        self.parsed = parse_recipe_args((InstructkitArguments, trainer_config_class, ModelConfig),
                                        args=args, default_config=default_config)
        self.args, self.training_args, self.model_args = self.parsed
        modeling.check_local_path(self.model_args.model_name_or_path, "model_name_or_path")
        modeling.check_local_path(self.args.tokenizer_name_or_path, "tokenizer_name_or_path")
        self.start = time.time()
        use_all_cpu_cores()
        self.metrics: dict = {"recipe": recipe, "machine": machine_summary(self.training_args)}
        log(f"{recipe} on {self.metrics['machine']} -> {self.training_args.output_dir}")

    # -- steps ------------------------------------------------------------------------------------------
    def load_data(self):
        """Validated rows in TRL's forms, with held-out split(s)."""
        self.dataset, self.data_report = data.load_sft_data(self.args, seed=self.training_args.seed)
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
        data.configure_loss(self.training_args, self.data_report, self.tokenizer)
        return self.tokenizer

    def trainer_datasets(self) -> dict:
        eval_dataset = self.dataset.get("test") if self.training_args.eval_strategy != "no" else None
        return {"train_dataset": self.dataset["train"], "eval_dataset": eval_dataset}

    def train(self, trainer):
        """Held-out exact match before, training, exact match after; prints both."""
        data.report_dropped(self.dataset, trainer, self.data_report)
        log(preflight.summary(preflight.check(trainer, self.data_report)))
        before = self.exact_match(trainer.model)
        log(format_exact_match("before training", before))
        result = trainer.train(resume_from_checkpoint=self.training_args.resume_from_checkpoint)
        after = self.exact_match(trainer.model)
        log(format_exact_match("before training", before))
        log(format_exact_match("after training ", after))
        self.metrics.update(train=result.metrics, exact_match={"before": before, "after": after})
        return result

    def save(self, trainer) -> Path:
        """Model/adapter + tokenizer (every rank takes part, as ZeRO-3 needs), then config + metrics (main only)."""
        out = Path(self.training_args.output_dir)
        trainer.save_model(str(out))
        if trainer.accelerator.is_main_process:
            # config.yaml records the same settings readably; no pickle in what users share or load
            (out / "training_args.bin").unlink(missing_ok=True)
            self.tokenizer.save_pretrained(out)
            save_resolved_config(out / "config.yaml", *self.parsed)
            self.metrics.update(data=self.data_report.as_dict(), seconds=round(time.time() - self.start, 1))
            (out / "metrics.json").write_text(json.dumps(self.metrics, indent=2, default=str) + "\n")
        trainer.accelerator.wait_for_everyone()
        log(f"saved to {out}: {'adapter' if self.model_args.use_peft and self.recipe != 'sft_full' else 'model'}, tokenizer, config.yaml, "
            f"metrics.json ({round(time.time() - self.start, 1)} s in all)")
        return out

    # -- helpers ----------------------------------------------------------------------------------------
    def exact_match(self, model) -> dict:
        """{split: result} on every held-out split; main process only ({} elsewhere or when disabled)."""
        from instructkit.evaluation import exact_match

        if not self.args.eval_exact_match or not is_main_process():
            return {}
        results = {}
        for split in (s for s in self.dataset if s != "train"):
            rows = data.exact_match_rows(self.dataset[split], self.args.eval_max_samples)
            if rows:
                results[split] = exact_match(model, self.tokenizer, rows, self.args.eval_max_new_tokens,
                                             self.args.eval_batch_size)
        return results
