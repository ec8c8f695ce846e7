"""Supervised fine-tuning runs (TRL's SFTTrainer): instruction data, trained on the responses only.

The loss follows the data: completion-only for prompt/completion forms, assistant-only for conversations, every token
for text. Assistant turns are found (`assistant_masks: auto`) through the chat template's `{% generation %}` markers,
or TRL's training variant of a stock template it knows when that variant trains exactly each answer and its
end-of-turn token; otherwise instructkit renders prefixes of each conversation with the tokenizer's own template and
hands TRL the tokenized rows (`data.masks`). TRL's Qwen2.5 variant is such an otherwise: it also trains the newline
after `<|im_start|>assistant` (part of the generation prompt) and the one after `<|im_end|>`. Mixtures of
conversations with plain text (replay) are tokenized by instructkit too. A template neither way can mask stops here,
before the model loads.

Batches are padding-free by default (rows flattened into one sequence, no pad token computed, the same loss): TRL
1.16 refuses `padding_free` with `max_length` unless packing (the guard of trl#5359; unsloth#7951 works around the
same one), yet `SFTTrainer._prepare_dataset` truncates every row to max_length either way, so the resolved config
gives TRL `padding_free: false` plus TRL's own padding-free collator.
"""

from __future__ import annotations

from instructkit.chat_templates import bundled_names, training_template
from instructkit.config.resolved import RecipeConfig
from instructkit.data import masks
from instructkit.data.loading import TrainingData, load_instructions
from instructkit.data.report import DataReport
from instructkit.errors import InstructkitError
from instructkit.log import log
from instructkit.training import measurements
from instructkit.training import preflight
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
    screen = measurements.decontamination_screen(config)  # overlap with the benchmarks (drop: rows removed)
    data = load_instructions(config.script, config.training.seed, exclude=screen)
    for line in data.report.lines():
        log(line)
    measurements.log_decontamination(data, screen)
    return data


def loss_settings(training_args, report: DataReport, tokenizer=None, mask: str | None = None) -> dict:
    """The SFTConfig loss keys for this data (and its chat template, when `tokenizer` is given); `mask`: how
    assistant turns are found ('template' | 'prefix', `mask_method`; found here when not given).

    A conversational prompt/completion row whose template masks assistant turns also gets assistant-only loss; TRL
    then trains the tokens both masks keep, i.e. the completion's content and end-of-turn token but not what the
    template renders after it (ChatML's newline). Rows instructkit tokenizes carry their masks (no TRL loss option).
    """
    form = form_of_data(report)
    check_loss_options(training_args, report, form)
    if mask is None and tokenizer is not None:
        mask = mask_method("auto", report, tokenizer)
    if tokenized_here(form, mask, report):
        return {"assistant_only_loss": False, "completion_only_loss": False}
    if form == "prompt_completion":
        return {"completion_only_loss": True, **({"assistant_only_loss": True} if mask == "template" else {})}
    if form == "messages":
        return {"assistant_only_loss": True}
    return {}


def form_of_data(report: DataReport) -> str:
    """What the rows are: prompt_completion | messages | text | preference, or forms joined by + (a mixture)."""
    return report.form or {"alpaca": "prompt_completion", "sharegpt": "messages"}.get(report.format, report.format)


def tokenized_here(form: str, mask: str | None, report: DataReport) -> bool:
    """Whether instructkit tokenizes the rows: conversations masked by prefix rendering, or conversations mixed with
    text (TRL takes one form per data set)."""
    return (form == "messages" and mask == "prefix") or (report.conversational and "+" in form)


def mask_method(requested: str, report: DataReport, tokenizer) -> str | None:
    """How assistant turns are found: 'template' (TRL masks with the template's markers or its own training variant)
    or 'prefix' (instructkit renders prefixes); None when TRL's completion mask does (prompt/completion rows) or there
    are no conversations. Conversations no way can mask stop here, before anything loads."""
    if not report.conversational or not tokenizer.chat_template:
        return None
    template = training_template(tokenizer)
    exact = template is not None and (template == tokenizer.chat_template
                                      or masks.masks_match_prefix(tokenizer, template))
    if requested == "template" or (requested == "auto" and exact):
        if template is None:
            raise _unmaskable(report, "it has no {% generation %} markers and TRL knows no training variant of it")
        return "template"
    if "messages" not in form_of_data(report).split("+"):
        return None  # prompt/completion rows: TRL's completion mask needs no markers
    problem = masks.prefix_problem(tokenizer)
    if problem is None:
        return "prefix"
    if requested == "auto" and template is not None:
        log(f"assistant masks: rendering prefixes cannot mask this template ({problem}); TRL's training variant of it "
            "is used")
        return "template"
    raise _unmaskable(report, "it has no {% generation %} markers, TRL knows no training variant of it, and "
                              f"rendering prefixes of a conversation cannot find the turns: {problem}")


def _unmaskable(report: DataReport, why: str) -> InstructkitError:
    return InstructkitError(
        f"{report.format} data trains the assistant turns only, but the tokenizer's chat template cannot mark them: "
        f"{why}.", fix="set chat_template: to a bundled template (" + ", ".join(bundled_names()) + ") or a .jinja file "
                       "with {% generation %} ... {% endgeneration %} around each assistant turn's content and "
                       "end-of-turn token.")


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
    """The SFT config's final form: how assistant turns are masked and the loss settings for the data, and
    padding-free through TRL's collator when TRL would refuse `padding_free` (see the module docstring)."""
    found = mask_method(config.script.assistant_masks, report, tokenizer) if tokenizer is not None else None
    training = loss_settings(config.training, report, tokenizer, found)
    t = config.training
    script = {"assistant_masks": found} if found else {}
    if t.padding_free and not t.packing and t.max_length is not None:
        training["padding_free"], script["padding_free_collator"] = False, True
    return config.replace(script=script, training=training)


def trainer_splits(config: RecipeConfig, data, tokenizer, held_out: int | None = 1) -> dict:
    """The splits the trainer gets: the validated rows (TRL tokenizes and masks them), or, when instructkit does
    (`tokenized_here`), those rows tokenized with their masks: train and the first `held_out` held-out splits
    (None: all)."""
    report = data.report
    if not tokenized_here(form_of_data(report), config.script.assistant_masks, report):
        return dict(data.splits)
    args = config.training
    template = None if config.script.assistant_masks == "prefix" else training_template(tokenizer)
    names = ["train"] + list(data.held_out)[:held_out]
    out = {}
    for name in names:
        out[name] = masks.tokenize(data.splits[name], tokenizer, config.script.assistant_masks, template,
                                   args.eos_token or tokenizer.eos_token, args.dataset_num_proc)
    counts = masks.token_counts(data.train, out["train"])
    report.tokens = counts
    log("data: tokenized by instructkit (assistant turns found by "
        + ("rendering prefixes of the chat template" if template is None else "the template's markers") + "): "
        + "; ".join(f"{kind}: {c['rows']} rows, {c['tokens']:,} tokens, {c['trained']:,} trained"
                    for kind, c in counts.items()))
    return out


def padding_free_collator(config: RecipeConfig, tokenizer):
    """TRL's own collator, flattening each batch (None when the config does not ask for it)."""
    if not config.script.padding_free_collator:
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True,
                                           pad_to_multiple_of=config.training.pad_to_multiple_of)


class SFTRun(Run):
    """A supervised run: `start` resolves the loss for the data and template (and tokenizes the rows when
    instructkit masks them)."""

    @classmethod
    def resolve(cls, config: RecipeConfig, data, tokenizer) -> RecipeConfig:
        return resolve_sft(config, data.report, tokenizer)

    def trainer_splits(self) -> dict:
        return trainer_splits(self.config, self.data, self.tokenizer, int(self.config.training.eval_strategy != "no"))

    def check(self, trainer) -> dict:
        tokenized = self.splits["train"] if self.splits["train"] is not self.data.train else None
        return preflight.check(trainer, self.data.report, tokenized)

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
