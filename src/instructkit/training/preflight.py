"""Checks on the tokenized training rows, before the first step: what TRL built is what the model should learn.

TRL tokenizes and masks in `SFTTrainer.__init__` (`trainer.train_dataset` then holds `input_ids` and `labels`, -100
outside the trained tokens; the `completion_mask` / `assistant_masks` columns are folded into `labels` and
dropped). Mistakes there cost a whole run and show only at inference: a model that never stops, a double BOS,
a prompt rendered differently at inference. `check` reads the prepared rows and stops with the reason and the fix:

* rows are left with trained tokens (TRL drops rows with none, silently; `training.run.report_dropped` counts them);
* the end-of-turn token is among the trained tokens of every row that was not cut by `max_length`;
* the pad token is neither eos nor the end-of-turn token;
* one BOS at the start when the template renders one, never two;
* the generation prompt renders, and the training rendering continues it with the answer;
* rows instructkit tokenized itself (`data.masks`) are trained exactly where their masks say (TRL applied them).
"""

from __future__ import annotations

from collections.abc import Iterator

from instructkit import chat_templates
from instructkit.data.formats import is_conversational
from instructkit.errors import InstructkitError

IGNORE = -100
SHOWN = 3  # examples named in an error


def documents(dataset, batch_size: int = 512) -> Iterator[tuple[int, list[int], list[int]]]:
    """(row index, input_ids, labels) of every document; a row packed by `bfd` is split on its `seq_lengths`."""
    columns = [c for c in ("input_ids", "labels", "seq_lengths") if c in dataset.column_names]
    for batch_no, batch in enumerate(dataset.select_columns(columns).iter(batch_size=batch_size)):
        for i, (ids, labels) in enumerate(zip(batch["input_ids"], batch["labels"])):
            lengths = batch["seq_lengths"][i] if "seq_lengths" in batch else [len(ids)]
            offset = 0
            for n in lengths:
                yield batch_no * batch_size + i, ids[offset:offset + n], labels[offset:offset + n]
                offset += n


def token_stats(dataset, max_length: int | None) -> dict:
    """Rows, tokens, trained tokens, rows at max_length and row lengths of a prepared (tokenized) data set."""
    lengths, trained, empty = [], 0, 0
    for _, ids, labels in documents(dataset):
        lengths.append(len(ids))
        n = sum(label != IGNORE for label in labels)
        trained += n
        empty += n == 0
    return {"rows": len(lengths), "tokens": sum(lengths), "trained_tokens": trained, "rows_without_trained": empty,
            "rows_at_max_length": sum(n >= max_length for n in lengths) if max_length else 0, "lengths": lengths}


def tokenizer_of(trainer):
    processing_class = trainer.processing_class
    return getattr(processing_class, "tokenizer", processing_class)


def check(trainer, report=None, tokenized=None) -> dict:
    """Run every check on `trainer.train_dataset`; raise `InstructkitError` on the first failure. Returns what was
    checked (for the log). `tokenized`: the rows instructkit tokenized with their masks, when it did."""
    from datasets import Dataset

    tok, args, dataset = tokenizer_of(trainer), trainer.args, trainer.train_dataset
    if not isinstance(dataset, Dataset) or "labels" not in dataset.column_names:
        return {"skipped": "the training data is streamed or was not prepared by TRL"}
    if len(dataset) == 0:
        raise InstructkitError(f"no training row has a trained token left: every prompt fills max_length="
                               f"{args.max_length}.", fix="raise max_length, or shorten the prompts.")
    conversational = report.conversational if report else is_conversational(dataset[0])
    conversational = conversational and bool(tok.chat_template)
    template = getattr(trainer, "chat_template", None)  # TRL's training variant, if it swapped one in
    eot = chat_templates.end_of_turn_token(tok, template) if conversational else tok.eos_token
    if eot is None:
        raise InstructkitError("the chat template closes an assistant turn with no special token, so the model has "
                               "no token to stop on.", fix="use a bundled template (chat_template: chatml, llama3, "
                                                           "...) or end assistant turns with eos_token.")
    check_pad(tok, eot)
    if conversational:
        problem = chat_templates.generation_prompt_problem(tok, template)
        if problem:
            raise InstructkitError(f"chat template: {problem}.", fix="render the assistant header under "
                                   "add_generation_prompt, exactly as a training conversation renders it.")
    per_row = not args.packing or args.packing_strategy == "bfd"  # bfd_split / wrapped cut rows into chunks
    bos_expected = conversational and chat_templates.renders_bos(tok, template) and "text" not in report_forms(report)
    # text rows mixed with conversations end with eos, as TRL ends text rows
    stops = {eot, tok.eos_token} if "text" in report_forms(report) else {eot}
    empty = check_rows(dataset, tok, tok.convert_tokens_to_ids(sorted(stops)), args.max_length, bos_expected) \
        if per_row else None
    if tokenized is not None and not args.packing:
        check_masks_applied(dataset, tokenized, args.max_length, args.truncation_mode)
    return {"rows": len(dataset), "end_of_turn": eot, "pad": tok.pad_token,
            "bos": tok.bos_token if bos_expected else None, "rows_without_trained": empty}


def report_forms(report) -> set[str]:
    return set((report.form or "").split("+")) if report is not None else set()


def check_masks_applied(prepared, tokenized, max_length: int | None, truncation_mode: str = "keep_start",
                        rows: int = 256) -> None:
    """TRL trains exactly the tokens of our masks (it applies `assistant_masks` itself; a mask column it ignored would
    train every token silently), checked on the first `rows` rows when TRL dropped none."""
    if len(prepared) != len(tokenized):
        return  # rows whose prompt fills max_length were dropped: rows no longer line up (counted elsewhere)
    n = min(rows, len(prepared))
    cut = slice(None, max_length) if truncation_mode != "keep_end" or max_length is None else slice(-max_length, None)
    for i, (ours, theirs) in enumerate(zip(tokenized.select(range(n))["assistant_masks"],
                                           prepared.select(range(n))["labels"])):
        if [bool(m) for m in ours[cut]] != [label != IGNORE for label in theirs]:
            raise InstructkitError(f"training row {i}: TRL trains other tokens than the assistant mask instructkit "
                                   "computed for it.", fix="report this; meanwhile use a chat template with "
                                                           "{% generation %} markers (assistant_masks: template).")


def check_preference(trainer, report=None) -> dict:
    """The same promises for DPO's prepared pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`): pad is not a stop
    token; each answer ends its turn with the end-of-turn token (the preference must include stopping); one BOS."""
    tok, dataset = tokenizer_of(trainer), trainer.train_dataset
    if "chosen_ids" not in getattr(dataset, "column_names", []):
        return {"skipped": "the training data is streamed or was not prepared by TRL"}
    if len(dataset) == 0:
        raise InstructkitError(f"no preference pair is left: every prompt fills max_length={trainer.args.max_length}.",
                               fix="raise max_length, or shorten the prompts.")
    conversational = (report.conversational if report else True) and bool(tok.chat_template)
    eot = (chat_templates.end_of_turn_token(tok) if conversational else None) or tok.eos_token
    check_pad(tok, eot)
    eot_id, bos_id = tok.convert_tokens_to_ids(eot), tok.bos_token_id
    no_eot, double_bos, with_bos = [], [], 0
    for row, pair in enumerate(dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])):
        if any(eot_id not in pair[k] for k in ("chosen_ids", "rejected_ids")):
            no_eot.append(row)
        if bos_id is not None and pair["prompt_ids"][:2] == [bos_id, bos_id]:
            double_bos.append(row)
        with_bos += bos_id is not None and pair["prompt_ids"][:1] == [bos_id]
    if no_eot:
        raise InstructkitError(f"{len(no_eot)} of {len(dataset)} preference pairs have an answer without the "
                               f"end-of-turn token {eot!r} (rows {_rows(no_eot)}).",
                               fix="use a chat template that closes assistant turns with a special token.")
    if double_bos:
        raise InstructkitError(f"{len(double_bos)} preference prompts start with two BOS tokens (rows "
                               f"{_rows(double_bos)}).", fix="do not start prompt strings with the BOS token.")
    return {"rows": len(dataset), "end_of_turn": eot, "pad": tok.pad_token,
            "bos": tok.bos_token if with_bos else None, "rows_without_trained": 0}


def summary(result: dict) -> str:
    """One log line for `check`'s result."""
    if "skipped" in result:
        return f"preflight: skipped ({result['skipped']})"
    per_row = result["rows_without_trained"] is not None
    parts = [f"{result['rows']} training rows", f"end of turn {result['end_of_turn']!r}" + " trained" * per_row,
             f"pad {result['pad']!r}", f"one BOS {result['bos']!r}" if result["bos"] else "no BOS from the template"]
    if not per_row:
        parts.append("per-row checks skipped (packing cuts rows into chunks)")
    elif result["rows_without_trained"]:
        parts.append(f"{result['rows_without_trained']} packed rows have no trained token (prompt fills max_length)")
    return "preflight ok: " + ", ".join(parts)


def check_pad(tok, eot: str) -> None:
    if tok.pad_token is None or tok.pad_token in (tok.eos_token, eot):
        raise InstructkitError(f"the pad token {tok.pad_token!r} is the eos / end-of-turn token: whatever masks or "
                               "strips padding by token id (generation without an attention mask, collators, "
                               "decoding) also hides the token the model must learn to stop on.",
                               fix="leave pad_token unset (instructkit then adds a distinct <|pad|>) or give the "
                                   "tokenizer a pad token of its own.")


def check_rows(dataset, tok, eot_ids: list[int], max_length: int | None, bos_expected: bool) -> int:
    """Per document: the end-of-turn token (one of `eot_ids`) trained (unless cut by max_length); a single leading BOS.

    Returns the number of documents with no trained token at all: TRL drops such rows unless it packs, and a packed
    one (a prompt filling max_length) only costs compute, so it is counted, not refused.
    """
    no_eot, double_bos, no_bos, empty = [], [], [], 0
    bos_id = tok.bos_token_id
    for row, ids, labels in documents(dataset):
        cut = max_length is not None and len(ids) >= max_length
        trained = [t for t, label in zip(ids, labels) if label != IGNORE]
        empty += not trained
        if not cut and not set(eot_ids) & set(trained):
            no_eot.append(row)
        if bos_id is not None:
            leading = next((i for i, t in enumerate(ids) if t != bos_id), len(ids))
            if leading > 1:
                double_bos.append(row)
            elif leading == 0 and bos_expected and not cut:
                no_bos.append(row)
    eot = " or ".join(map(repr, tok.convert_ids_to_tokens(eot_ids)))
    if no_eot:
        raise InstructkitError(f"{len(no_eot)} of {len(dataset)} training rows do not train the end-of-turn token "
                               f"{eot} (rows {_rows(no_eot)}), so the model does not learn to stop.",
                               fix="use a template whose {% generation %} block ends with the end-of-turn token "
                                   "(the bundled ones do), or end every completion with it.")
    if double_bos:
        raise InstructkitError(f"{len(double_bos)} training rows start with two or more BOS tokens {tok.bos_token!r} "
                               f"(rows {_rows(double_bos)}): the template or the text already holds the BOS and the "
                               "tokenizer adds another.", fix="render {{ bos_token }} once in the template and do not "
                                                              "start prompt/text strings with it.")
    if no_bos:
        raise InstructkitError(f"{len(no_bos)} training rows lack the BOS {tok.bos_token!r} the chat template renders "
                               f"(rows {_rows(no_bos)}).", fix="use truncation_mode: keep_start, or raise max_length.")
    return empty


def _rows(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:SHOWN])) + (", ..." if len(rows) > SHOWN else "")
