"""Build the embedded default: tokenizer, pretrained tiny Llama, and the instruction data set.

No hub is needed: the tokenizer is trained with `tokenizers` on the world's own text, the model is a
small Llama pretrained on plain-text statements of the same world (so that SFT has a base to build on,
as in real life: the base knows things but has never seen an instruction or a chat turn), and the data
set is generated. Everything follows from `EmbeddedSpec`, so the same spec
gives byte-identical files; the result is cached under `cache_root()` keyed by the spec's hash.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from instructkit.chat_templates import chat_template_text

from . import world as W

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<|bos|>"]
FORMAT_VERSION = 10  # bump when the builder's output changes for the same spec


@dataclass(frozen=True)
class EmbeddedSpec:
    """Everything that determines the embedded default; its hash names the cache folder."""

    seed: int = 0
    vocab_size: int = 1024         # room for every lexicon word (phrasings, English, Zorbish) as one token
    # bitsandbytes' CPU 4-bit kernels need every quantized layer's input size to be a multiple of 64 (its block
    # size) and its output size a multiple of 32: hidden 192 and MLP 384 fit, 160 does not (QLoRA would fail)
    hidden_size: int = 192
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 6   # head size 32
    num_key_value_heads: int = 6
    max_position_embeddings: int = 256
    n_train: int = 14400
    n_test: int = 300
    n_test_phrasings: int = 180
    pretrain_facts: int = 48000
    pretrain_epochs: float = 1.0
    pretrain_lr: float = 1e-3
    pretrain_batch_size: int = 32

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """`$INSTRUCTKIT_CACHE`, else `$XDG_CACHE_HOME/instructkit`, else `~/.cache/instructkit`."""
    if os.environ.get("INSTRUCTKIT_CACHE"):
        return Path(os.environ["INSTRUCTKIT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "instructkit"


def _frame_corpus(zorbish: list[str]) -> list[str]:
    """Task phrasings and prose with the argument slots removed: what the tokenizer should merge."""
    frames = []
    for task in W.TASKS:
        for text in task.train_phrasings + task.heldout_phrasings + task.prose:
            frames.append(re.sub(r"\{\w+\}", "", text.replace("|", " ")))
    frames += [" ".join(W.POSITIVE + W.NEGATIVE + W.NEUTRAL + W.MEANINGS + zorbish + ["user", "assistant", "system"])] * 4
    return frames * 50


def build_tokenizer(spec: EmbeddedSpec):
    """Byte-level BPE whose merges stay inside the world's own vocabulary; bos, eos, pad distinct.

    The pre-tokenizer keeps every known phrasing/lexicon word whole (BPE then merges it) and splits
    anything else into single characters: an argument word ("bawxtd", "64") is spelled out, so a letter
    is the same token wherever it appears. Tiny models learn to copy, reverse and count far faster that way.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # longest first so alternatives don't shadow each other; ties by name (set order varies per process)
    lexicon = W._frame_words() | set(W.World(spec.seed).zorbish) | {"user", "assistant", "system"}
    known = sorted(lexicon, key=lambda w: (-len(w), w))
    pattern = r"(?i:\b(?:" + "|".join(map(re.escape, known)) + r")\b)|."
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(_frame_corpus(W.World(spec.seed).zorbish), trainers.BpeTrainer(
        vocab_size=spec.vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|im_end|>",
                                  pad_token="<|pad|>", unk_token=None,
                                  model_max_length=spec.max_position_embeddings)
    tok.chat_template = chat_template_text("chatml")
    return tok


def build_model(spec: EmbeddedSpec, tok):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False)
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def pretrain(spec: EmbeddedSpec, model, tok, facts: list[dict], work_dir: Path) -> dict:
    """Teach the base what is true in the world: continue plain-text statements (no instructions, no chat).

    Through TRL's SFTTrainer on string prompt/completion rows, loss on the continuation: statements are
    mostly random arguments, and a loss on those would spend the small compute budget on noise.
    Batches are drawn at random, never grouped by length: each task has its own typical length, so
    length-grouped batches hold one task each and the model never forms the copying circuits (measured:
    0 % on copy tasks after 3,000 grouped steps, 79-100 % after 1,500 random ones).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(work_dir), num_train_epochs=spec.pretrain_epochs,
        per_device_train_batch_size=spec.pretrain_batch_size, learning_rate=spec.pretrain_lr,
        lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01, max_length=spec.max_position_embeddings,
        completion_only_loss=True, eos_token="<|endoftext|>", train_sampling_strategy="random", seed=spec.seed, data_seed=spec.seed,
        bf16=False, use_cpu=True,
        activation_checkpointing=False, save_strategy="no", report_to="none", logging_steps=50,
        dataloader_num_workers=0, disable_tqdm=True)
    # A copy: TRL sets the tokenizer's eos to `eos_token`; the saved tokenizer keeps <|im_end|> (end of turn).
    trainer = SFTTrainer(model=model, args=args, processing_class=copy.deepcopy(tok),
                         train_dataset=Dataset.from_list(facts))
    result = trainer.train()
    return {"pretrain_loss": round(result.training_loss, 4), "pretrain_steps": result.global_step}


def build(spec: EmbeddedSpec, out_dir: Path) -> None:
    """Write base/ (model + tokenizer) and data/*.jsonl into out_dir.

    Deterministic on CPU for a given seed and thread count without `torch.use_deterministic_algorithms`, which
    makes CPU training 1.7x slower (measured); tests/test_embedded.py checks that two builds are identical.
    """
    t0 = time.time()
    world = W.World(spec.seed)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", spec.n_train), ("test", spec.n_test), ("test_phrasings", spec.n_test_phrasings)):
        rows = W.instruction_rows(world, n, spec.seed, split)
        with open(data_dir / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    tok = build_tokenizer(spec)
    model = build_model(spec, tok)
    facts = W.pretraining_facts(world, spec.pretrain_facts, spec.seed)
    stats = pretrain(spec, model, tok, facts, out_dir / "pretrain_run")
    shutil.rmtree(out_dir / "pretrain_run", ignore_errors=True)

    base = out_dir / "base"
    for cfg in (model.config, model.generation_config):
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(base, safe_serialization=True)
    tok.save_pretrained(base)
    info = {"spec": dataclasses.asdict(spec), "key": spec.key(), "build_seconds": round(time.time() - t0, 1),
            "parameters": sum(p.numel() for p in model.parameters()), **stats,
            "weights_sha256": file_sha256(base / "model.safetensors"),
            "tokenizer_sha256": file_sha256(base / "tokenizer.json")}
    (out_dir / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
