"""Preference runs (TRL's DPOTrainer): prompt / chosen / rejected pairs, started from an SFT output.

The reference model is the starting policy, held explicitly and never reloaded from a path. The held-out pairs are
always the trainer's eval data: reward accuracy on them is measured after training. DPO's loss covers the answers
by construction, so no loss settings are resolved for the data.
"""

from __future__ import annotations

from instructkit.config.resolved import RecipeConfig
from instructkit.data.loading import TrainingData, load_preferences
from instructkit.distributed import frozen_copy
from instructkit.log import log
from instructkit.training import measurements, preflight
from instructkit.training.run import Run, parse_config


def parse_dpo_config(argv=None, default_config=None, fixed: dict | None = None,
                     check_output: bool = True) -> RecipeConfig:
    """A DPO recipe's config (DPOConfig + ModelConfig + instructkit's keys); see `run.parse_config`."""
    from trl import DPOConfig

    return parse_config(DPOConfig, argv, default_config, fixed, check_output)


def load_preference_data(config: RecipeConfig) -> TrainingData:
    """Validated preference pairs (prompt / chosen / rejected), with held-out split(s)."""
    screen = measurements.decontamination_screen(config)  # overlap with the benchmarks (drop: rows removed)
    data = load_preferences(config.script, config.training.seed, exclude=screen)
    for line in data.report.lines():
        log(line)
    measurements.log_decontamination(data, screen)
    return data


def reference_model(model, peft_config, training_args):
    """DPO's reference, always the starting policy and never reloaded from a path (TRL would re-read
    `config._name_or_path`, which is wrong for a merged or in-memory model): under LoRA none is needed (the adapter
    disabled is the start); with precomputed reference log-probs neither; otherwise a frozen in-memory copy
    (under ZeRO-3 a partitioned one: `distributed.frozen_copy`).
    """
    if peft_config is not None or training_args.precompute_ref_log_probs:
        return None
    return frozen_copy(model)


def truncate_prompts(trainer, max_prompt_length: int | None) -> None:
    """Prompts longer than `max_prompt_length` tokens keep their last ones, as TRL's DPO did before TRL 1.x removed
    the key (the turn being answered stays; the start of a long conversation goes). Counted and logged."""
    if not max_prompt_length:
        return
    for name in ("train_dataset", "eval_dataset"):
        dataset = getattr(trainer, name)
        if dataset is None or "prompt_ids" not in getattr(dataset, "column_names", []):
            continue
        cut = sum(1 for ids in dataset["prompt_ids"] if len(ids) > max_prompt_length)
        if cut:
            setattr(trainer, name, dataset.map(lambda row: {"prompt_ids": row["prompt_ids"][-max_prompt_length:]},
                                               desc=f"max_prompt_length={max_prompt_length}"))
        log(f"data: {cut} of {len(dataset)} {name.split('_')[0]} prompts are longer than max_prompt_length="
            f"{max_prompt_length} tokens and keep their last {max_prompt_length}")


class DPORun(Run):
    """A preference run: its checks read prepared pairs, and held-out reward accuracy is measured after training."""

    @property
    def eval_dataset(self):
        return self.data.test

    def prepare(self, trainer) -> None:
        """Prompts cut to max_prompt_length first, when it is set (then the checks see what trains)."""
        truncate_prompts(trainer, self.config.script.max_prompt_length)
        super().prepare(trainer)

    def check(self, trainer) -> dict:
        return preflight.check_preference(trainer, self.data.report)

    def report_dropped(self, trainer) -> None:
        """Also count pairs longer than max_length (prompt + the longer answer): their answers are cut."""
        super().report_dropped(trainer)
        max_length, prepared = trainer.args.max_length, trainer.train_dataset
        if max_length and "chosen_ids" in prepared.column_names:
            lengths = (len(p) + max(len(c), len(r)) for p, c, r in
                       zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"]))
            self.data.report.truncated = sum(1 for n in lengths if n > max_length)
            if self.data.report.truncated:
                log(f"data: {self.data.report.truncated} preference pairs are longer than max_length={max_length}; "
                    "their answers are cut")

    def after_training(self, trainer) -> None:
        super().after_training(trainer)
        if trainer.eval_dataset is None:
            return
        held_out = trainer.evaluate()  # every process takes part
        self.metrics["eval"] = held_out
        log("held-out preference pairs: " + ", ".join(
            f"{k.removeprefix('eval_')} {v:.3f}" for k, v in held_out.items()
            if k in ("eval_rewards/accuracies", "eval_rewards/margins", "eval_loss")))
