"""Generation through the chat template, the one way instructkit answers prompts: held-out exact match, sample
generations during training, generation metrics, `instructkit chat / generate / serve` all call `generate`, so every
one of them sees prompts exactly as evaluated (left padding, answers cut at the template's end-of-turn token)."""

from __future__ import annotations

from instructkit.chat_templates import stop_token_ids
from instructkit.errors import InstructkitError


def sampling(temperature: float = 0.0, top_p: float = 1.0) -> dict:
    """`model.generate` keywords: greedy at temperature 0 (reproducible), else sampling."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise InstructkitError(f"temperature {temperature} / top_p {top_p} out of range.",
                               fix="use temperature >= 0 (0 = greedy) and 0 < top_p <= 1.")
    return {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature, "top_p": top_p}


def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 32,
             batch_size: int = 64, progress: str | None = None, **generate_kwargs) -> list[dict]:
    """Answers for chat prompts (message lists) or plain string prompts, in input order: greedy unless
    `generate_kwargs` say otherwise (`do_sample`, `temperature`, a `streamer` for one prompt, ...).

    Batches are left-padded, so every row's answer starts right after its own prompt; each answer is cut at the
    template's end-of-turn token. `progress`: show a progress bar with that description (rows done).
    """
    import torch

    stop_ids = stop_token_ids(tokenizer)  # the template's end-of-turn token first, then eos
    was_training, side = model.training, tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    out = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(conversations), desc=progress, unit="prompt")
    try:
        for start in range(0, len(conversations), batch_size):
            batch = conversations[start:start + batch_size]
            if isinstance(batch[0], str):  # plain prompt/completion data: no chat template
                enc = tokenizer(batch, padding=True, return_tensors="pt")
            else:
                enc = tokenizer.apply_chat_template(batch, add_generation_prompt=True, padding=True,
                                                    return_tensors="pt", return_dict=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, **{"do_sample": False, **generate_kwargs},
                                     eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
            prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
            for row, n_prompt in zip(gen[:, enc["input_ids"].shape[1]:].tolist(), prompt_tokens):
                end = next((i for i, t in enumerate(row) if t in stop_ids), None)
                stopped = end is not None
                n_generated = end + 1 if stopped else len(row) - row.count(tokenizer.pad_token_id)
                row = row[:end] if stopped else row
                out.append({"text": tokenizer.decode(row, skip_special_tokens=True), "stopped": stopped,
                            "prompt_tokens": n_prompt, "completion_tokens": n_generated})
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def generate_on_all_processes(model, tokenizer, prompts: list, max_new_tokens: int = 32, batch_size: int = 64) -> list[dict]:
    """`generate`, the prompts shared out over the launch's processes and gathered back in order on every rank.

    Every process must call it (DDP, DeepSpeed); each needs the full weights (see `distributed.weights_for_generation`).
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    if state.num_processes == 1:
        return generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    # padding gives every rank the same number of prompts; the copies at the end are cut off after the gather
    with state.split_between_processes(prompts, apply_padding=True) as mine:
        answers = generate(model, tokenizer, mine, max_new_tokens, batch_size)
    return gather_object(answers)[:len(prompts)]
