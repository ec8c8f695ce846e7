"""Supervised fine-tuning runs (TRL's SFTTrainer): instruction data, trained on the responses only.

The loss follows the data: completion-only for prompt/completion forms, assistant-only for conversations (the chat
template must mark assistant turns with `{% generation %}`, or be one TRL has a training variant of: checked here
rather than deep in TRL). Batches are padding-free by default (rows flattened into one sequence, no pad token
computed, the same loss): TRL 1.16 refuses `padding_free` with `max_length` unless packing (the guard of trl#5359;
unsloth#7951 works around the same one), yet `SFTTrainer._prepare_dataset` truncates every row to max_length either
way, so the resolved config gives TRL `padding_free: false` plus TRL's own padding-free collator.
"""

from __future__ import annotations

from instructkit.chat_templates import bundled_names, training_template
from instructkit.config.resolved import RecipeConfig
from instructkit.data.loading import TrainingData, load_instructions
from instructkit.data.report import DataReport
from instructkit.errors import InstructkitError
from instructkit.log import log
from instructkit.training.run import Run, parse_config


def parse_sft_config(argv=None, default_config=None, fixed: dict | None = None,
                     check_output: bool = True) -> RecipeConfig:
    """An SFT recipe's config (SFTConfig + ModelConfig + instructkit's keys); see `run.parse_config`."""
    from trl import SFTConfig

    config = parse_config(SFTConfig, argv, default_config, fixed, check_output)
    if config.script.max_prompt_length is not None:
        raise InstructkitError(f"max_prompt_length: {config.script.max_prompt_length} is a DPO setting (it cuts the "
                               "prompts of preference pairs); SFT rows are limited by max_length.",
                               fix="remove max_prompt_length (or set max_length).")
    return config


def load_sft_data(config: RecipeConfig) -> TrainingData:
    """Validated instruction rows in TRL's forms, with held-out split(s)."""
    data = load_instructions(config.script, config.training.seed)
    for line in data.report.lines():
        log(line)
    return data


def loss_settings(training_args, report: DataReport, tokenizer=None) -> dict:
    """The SFTConfig loss keys for this data (and its chat template, when `tokenizer` is given).

    A conversational prompt/completion row whose template has generation markers also gets assistant-only loss; TRL
    then trains the tokens both masks keep, i.e. the completion's content and end-of-turn token but not what the
    template renders after it (ChatML's newline).
    """
    form = report.form or {"alpaca": "prompt_completion", "sharegpt": "messages"}.get(report.format, report.format)
    check_loss_options(training_args, report, form)
    if form == "prompt_completion":
        markers = tokenizer is not None and report.conversational and training_template(tokenizer)
        return {"completion_only_loss": True, **({"assistant_only_loss": True} if markers else {})}
    if form == "messages":
        if tokenizer is not None and not training_template(tokenizer):
            raise InstructkitError(
                f"{report.format} data trains the assistant turns only, which needs a chat template that marks them "
                "with {% generation %} ... {% endgeneration %}; the tokenizer's template has no such markers and TRL "
                "knows no training variant of it.",
                fix="set chat_template: to a bundled template (" + ", ".join(bundled_names()) + ") or a .jinja "
                    "file with the markers around each assistant turn's content and end-of-turn token.")
        return {"assistant_only_loss": True}
    return {}


def check_loss_options(training_args, report: DataReport, form: str) -> None:
    """Loss options the user set that the data cannot have, refused here rather than deep inside TRL."""
    kind = f"{report.format} data ({'plain text rows' if form == 'text' else 'plain-string prompt/completion rows'})"
    if getattr(training_args, "assistant_only_loss", False) and not report.conversational and form != "messages":
        raise InstructkitError(
            f"assistant_only_loss: true trains the assistant turns of conversations, but the training data is {kind}.",
            fix="set assistant_only_loss: false, or use conversational data (messages, ShareGPT, alpaca or "
                "message-list prompt/completion rows).")
    if getattr(training_args, "completion_only_loss", None) is True and form == "text":
        raise InstructkitError(f"completion_only_loss: true needs prompt/completion rows, but the training data is "
                               f"{kind}, which has no completion.",
                               fix="set completion_only_loss: false (text rows train on every token), or use "
                                   "prompt/completion or alpaca data.")


def resolve_sft(config: RecipeConfig, report: DataReport, tokenizer=None) -> RecipeConfig:
    """The SFT config's final form: loss settings for the data, and padding-free through TRL's collator when TRL
    would refuse `padding_free` (see the module docstring)."""
    training = loss_settings(config.training, report, tokenizer)
    t = config.training
    script = {}
    if t.padding_free and not t.packing and t.max_length is not None:
        training["padding_free"], script["padding_free_collator"] = False, True
    return config.replace(script=script, training=training)


def padding_free_collator(config: RecipeConfig, tokenizer):
    """TRL's own collator, flattening each batch (None when the config does not ask for it)."""
    if not config.script.padding_free_collator:
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True,
                                           pad_to_multiple_of=config.training.pad_to_multiple_of)


class SFTRun(Run):
    """A supervised run: `start` resolves the loss for the data and template."""

    @classmethod
    def resolve(cls, config: RecipeConfig, data, tokenizer) -> RecipeConfig:
        return resolve_sft(config, data.report, tokenizer)

    @property
    def data_collator(self):
        return padding_free_collator(self.config, self.tokenizer)

    def report_dropped(self, trainer) -> None:
        """Also count rows cut at max_length (TRL truncates silently); packed rows are chunks, not rows."""
        if trainer.args.packing:
            return
        super().report_dropped(trainer)
        max_length, prepared = trainer.args.max_length, trainer.train_dataset
        if max_length and "input_ids" in prepared.column_names:
            at_limit = sum(1 for n in map(len, prepared["input_ids"]) if n >= max_length)
            self.data.report.truncated = at_limit
            if at_limit:
                log(f"data: {at_limit} training rows reach max_length={max_length} and were truncated "
                    f"(or are exactly that long)")
