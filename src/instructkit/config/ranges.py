"""The allowed range of every numeric setting whose range is known: one table, checked when the config is parsed.

Out-of-range values otherwise pass argparse and the dataclasses and fail much later, after the data has been read,
as a library traceback (`per_device_train_batch_size: 0` in torch's sampler, `learning_rate: -1` in torch's optimizer,
`lora_r: 0` in peft) or, worse, are taken silently (`max_steps: 0` trains `num_train_epochs`, `save_total_limit: 0`
keeps every checkpoint, `test_split_size: 2.5` holds out 2 rows). `config.parsing` looks every YAML and command-line
value up here in the same pass that checks keys and types; `commands.main` does the same for the CLI's own options.

The ranges are the libraries' own (torch's optimizer and dropout checks, peft's LoRA checks, transformers' step
arguments, TRL's DPO losses, numpy's seed), plus what makes a setting mean anything at all.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Range:
    """`low` .. `high` (None: unbounded), each end included unless `*_open`; `also`: other values that mean
    something (max_steps: -1); `whole_above_one`: a share below 1 or else a whole count (save_steps: 0.25 or 500)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""
    also: tuple = ()
    whole_above_one: bool = False

    def problem(self, value) -> str | None:
        """What is wrong with the number `value` here, or None."""
        if value in self.also:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        if self.whole_above_one and value > 1 and value != int(value):
            return f"{value} is not a whole number (from 1 on it is a count, below 1 a share)"
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if below or above:
            return f"{_num(value)} is out of range: it must be {self.describe()}" + (f" ({self.why})" if self.why else "")
        return None

    def describe(self) -> str:
        low = None if self.low is None else ("greater than " if self.low_open else "at least ") + _num(self.low)
        high = None if self.high is None else ("less than " if self.high_open else "at most ") + _num(self.high)
        bounds = " and ".join(b for b in (low, high) if b)
        return " or ".join([_num(v) for v in self.also] + [bounds])


def _num(value) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def at_least(low, why: str = "", **kw) -> Range:
    return Range(low=low, why=why, **kw)


def positive(why: str = "", **kw) -> Range:
    return Range(low=0, low_open=True, why=why, **kw)


def share(why: str = "", high_open: bool = True) -> Range:
    """0 <= value < 1 (or <= 1)."""
    return Range(low=0, high=1, high_open=high_open, why=why)


SEED = Range(low=0, high=2**32 - 1, why="numpy takes seeds in 0 .. 2**32 - 1")
STEPS = positive("a whole number of optimizer steps, or a share of all steps below 1", whole_above_one=True)

RANGES: dict[str, Range] = {
    # -- the Trainer (transformers' TrainingArguments, shared by SFTConfig and DPOConfig) --------------------------
    "per_device_train_batch_size": at_least(1, "rows per device per step"),
    "per_device_eval_batch_size": at_least(1, "rows per device per evaluation step"),
    "gradient_accumulation_steps": at_least(1, "1 = one batch per optimizer step"),
    "eval_accumulation_steps": at_least(1),
    "learning_rate": positive("0 would train nothing"),
    "num_train_epochs": positive("set max_steps to train a number of steps instead"),
    "max_steps": at_least(1, "-1 trains num_train_epochs instead; 0 would do the same silently", also=(-1,)),
    "warmup_steps": at_least(0, "a whole number of steps, or a share of all steps below 1", whole_above_one=True),
    "weight_decay": at_least(0, "0 turns it off"),
    "adam_beta1": share("torch's Adam takes betas in [0, 1)"),
    "adam_beta2": share("torch's Adam takes betas in [0, 1)"),
    "adam_epsilon": at_least(0),
    "max_grad_norm": at_least(0, "0 turns gradient clipping off"),
    "label_smoothing_factor": share(),
    "neftune_noise_alpha": positive("null turns NEFTune off"),
    "logging_steps": STEPS,
    "save_steps": STEPS,
    "eval_steps": STEPS,
    "eval_delay": at_least(0),
    "save_total_limit": at_least(1, "null keeps every checkpoint; save_strategy: 'no' saves none"),
    "torch_empty_cache_steps": at_least(1),
    "seed": SEED,
    "data_seed": SEED,
    "dataloader_num_workers": at_least(0, "0 loads in the main process"),
    "dataloader_prefetch_factor": at_least(1),
    "ddp_timeout": at_least(1, "seconds"),
    "ddp_bucket_cap_mb": at_least(1),
    "router_aux_loss_coef": at_least(0),
    # -- TRL's SFTConfig / DPOConfig ---------------------------------------------------------------------------------
    "max_length": at_least(1, "tokens per row; null keeps every row whole"),
    "dataset_num_proc": at_least(1),
    "pad_to_multiple_of": at_least(1),
    "beta": positive("the DPO loss scales the log-ratio by beta, and IPO divides by it"),
    "label_smoothing": Range(low=0, high=0.5, high_open=True, why="TRL's robust DPO loss takes [0, 0.5); 0 turns it off"),
    "ld_alpha": share(high_open=False),
    "discopop_tau": positive(),
    "ref_model_mixup_alpha": share(high_open=False),
    "ref_model_sync_steps": at_least(1),
    "precompute_ref_batch_size": at_least(1),
    "loss_weights": at_least(0),
    # -- ModelConfig (LoRA) ------------------------------------------------------------------------------------------
    "lora_r": at_least(1, "the rank of the LoRA update"),
    "lora_alpha": at_least(1, "the update is scaled by lora_alpha / lora_r; 0 would train nothing"),
    "lora_dropout": share("a dropout probability"),
    # -- instructkit's keys ----------------------------------------------------------------------------------------
    "test_split_size": at_least(0, "a share of the rows below 1, a whole row count from 1, 0 for none",
                                whole_above_one=True),
    "eval_max_samples": at_least(1, "eval_exact_match: false turns exact match off"),
    "eval_max_new_tokens": at_least(1),
    "eval_batch_size": at_least(1),
    "sample_generations_steps": at_least(0, "0 turns sample generations off"),
    "sample_generations_num": at_least(1),
    "benchmark_num_fewshot": at_least(0, "null keeps each task's own"),
    "benchmark_limit": positive("a share of each task below 1, a whole number of documents from 1",
                                whole_above_one=True),
    "benchmark_batch_size": at_least(1),
    "decontamination_ngram": at_least(1, "words per n-gram"),
    # -- the benchmark recipe (recipes/evaluate.py) and the CLI's options ---------------------------------------------
    "num_fewshot": at_least(0, "null keeps each task's own"),
    "limit": positive("a share of each task below 1, a whole number of documents from 1", whole_above_one=True),
    "batch_size": at_least(1),
    "ngram": at_least(1, "words per n-gram"),
    "max_rows": at_least(0),
    "max_new_tokens": at_least(1),
    "temperature": at_least(0, "0 answers greedily"),
    "top_p": Range(low=0, high=1, low_open=True, why="the share of probability mass sampled from"),
    "port": Range(low=0, high=65535, why="0 takes any free port"),
    "gpus": at_least(1),
    "n": at_least(1, "rows to print"),
}


def range_problem(key: str, value) -> str | None:
    """What is wrong with `value` for `key` (a number, or a list of numbers), or None; keys without a known range
    and values that are not numbers (null, a word where a number may also be a word) are not checked here."""
    allowed = RANGES.get(key)
    if allowed is None:
        return None
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            problem = allowed.problem(item)
            if problem:
                return problem
    return None
