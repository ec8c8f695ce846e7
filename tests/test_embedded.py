"""The embedded default: deterministic, cached, with special tokens and held-out splits that are honest."""

import json
import re

from instructkit.embedded import PRESETS, ensure_embedded
from instructkit.embedded import world as W
from instructkit.embedded.build import build


def test_same_seed_builds_identical_tokenizer_and_weights(tmp_path):
    spec = PRESETS["test"]
    build(spec, tmp_path / "a")
    build(spec, tmp_path / "b")
    a, b = (json.loads((tmp_path / d / "BUILD.json").read_text()) for d in "ab")
    assert a["tokenizer_sha256"] == b["tokenizer_sha256"]
    assert a["weights_sha256"] == b["weights_sha256"]
    for split in ("train", "test", "test_phrasings"):
        assert (tmp_path / "a/data" / f"{split}.jsonl").read_bytes() == (tmp_path / "b/data" / f"{split}.jsonl").read_bytes()


def test_cache_is_reused(embedded):
    before = embedded.info["build_seconds"]
    again = ensure_embedded()
    assert again.root == embedded.root and again.info["build_seconds"] == before


def test_tokenizer_special_tokens_and_chat_template(embedded):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded.model_dir)
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert tok.eos_token == "<|im_end|>"
    assert "{% generation %}" in tok.chat_template.replace("{%- generation -%}", "{% generation %}")
    chat = [{"role": "user", "content": "Reverse cat."}, {"role": "assistant", "content": "tac"}]
    enc = tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    trained = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(trained) == "tac<|im_end|>"
    assert tok.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=False).endswith(
        "<|im_start|>assistant\n")


def test_heldout_arguments_never_appear_in_training_text():
    world = W.World(0)
    train = W.instruction_rows(world, 3000, 0, "train")
    pretrain = " ".join(f["prompt"] + f["completion"] for f in W.pretraining_facts(world, 9000, 0))
    train_text = " ".join(r["instruction"] + " " + r["input"] + " " + r["output"] for r in train)
    train_tokens = set(re.findall(r"[a-zA-Z]+", train_text + " " + pretrain))
    for word in world.heldout_words:  # argument words
        assert word not in train_tokens and word.upper() not in train_tokens
    train_pairs = {(int(a), int(b)) for a, b in re.findall(r"(\d+) plus (\d+)", pretrain)}
    assert not train_pairs & world.heldout_pairs
    # the dictionary: held-out words are asked about in no training instruction, answer or preference pair, and
    # every entry (held-out ones too) is stated in the pretraining prose: recall, not a copy of a seen request
    assert len(world.heldout_zorbish) == 20 and not set(world.heldout_zorbish) & set(world.train_zorbish)
    trained_meanings = {world.dictionary[z] for z in world.train_zorbish}
    assert {world.dictionary[z] for z in world.heldout_zorbish} <= trained_meanings  # answers are not new words
    prefs = " ".join(json.dumps(r) for r in W.preference_rows(world, 3000, 0, "train"))
    for z in world.heldout_zorbish:
        assert z not in set(re.findall(r"[a-z]+", train_text + " " + prefs))
        assert re.search(rf"\b{z}\b.*\b{world.dictionary[z]}\.", pretrain)
    test_rows = [r for r in W.instruction_rows(world, 300, 0, "test") if r["task"] == "translate"]
    asked = [next(w for w in re.findall(r"[a-z]+", r["instruction"] + " " + r["input"]) if w in world.dictionary)
             for r in test_rows]
    assert test_rows and set(asked) <= set(world.heldout_zorbish)
    assert all(r["output"] == world.dictionary[z] for r, z in zip(test_rows, asked))


def test_heldout_phrasings_are_unseen_and_every_task_is_covered():
    world = W.World(0)
    for task in W.TASKS:
        assert not set(task.heldout_phrasings) & set(task.train_phrasings)
    rows = W.instruction_rows(world, 90, 0, "test_phrasings")
    assert {r["task"] for r in rows} == set(W.TASK_NAMES)
    train_instr = {r["instruction"] for r in W.instruction_rows(world, 3000, 0, "train")}
    assert not {r["instruction"] for r in rows} & train_instr
