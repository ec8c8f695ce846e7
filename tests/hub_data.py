"""Tiny local look-alikes of the hub data sets the alignment-handbook's and TRL's recipes name, laid out as
`huggingface-cli download --repo-type dataset` writes them: README.md with the hub's `configs:` block, Parquet shards
under subfolders (`data/train_sft-00000-of-00003.parquet`), the hub's split names, columns and feature types.

Sizes: large enough for each recipe's `test_split_size` row count (the handbook holds out 1000 / 2000 rows of its
mixtures), small enough to validate and tokenize in a second or two. Contents are short made-up turns (the test model
has 256 positions).
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path


def _messages_feature():
    from datasets import Value

    return [{"content": Value("string"), "role": Value("string")}]


def _write(root: Path, configs: dict[str, dict[str, tuple[list[dict], int, str]]], features, card: str) -> Path:
    """`configs`: config name -> split -> (rows, shards, folder). README front matter as the hub writes it."""
    from datasets import Dataset

    lines = ["---", *card.strip().splitlines(), "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, (rows, shards, folder) in splits.items():
            lines += [f"  - split: {split}", f"    path: {folder}/{split}-*"]
            (root / folder).mkdir(parents=True, exist_ok=True)
            data = Dataset.from_list(rows, features=features)
            for i in range(shards):
                data.shard(shards, i, contiguous=True).to_parquet(str(root / folder / f"{split}-{i:05d}-of-{shards:05d}.parquet"))
    (root / "README.md").write_text("\n".join(lines + ["---", "", f"# {root.name} (test look-alike)", ""]))
    return root


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _chat(tag: str, i: int, turns: int = 2) -> list[dict]:
    out = []
    for t in range(turns):
        out += [{"content": f"{tag} question {i}.{t}?", "role": "user"},
                {"content": f"answer {i}.{t}.", "role": "assistant"}]
    return out


def ultrachat(root: Path) -> Path:
    """HuggingFaceH4/ultrachat_200k: prompt, prompt_id, messages (multi-turn); splits train_sft/test_sft/train_gen/
    test_gen; train_sft in 3 shards."""
    from datasets import Features, Value

    features = Features({"prompt": Value("string"), "prompt_id": Value("string"), "messages": _messages_feature()})

    def rows(tag, n):
        return [{"prompt": f"{tag} question {i}.0?", "prompt_id": _id(f"{tag}{i}"), "messages": _chat(tag, i)}
                for i in range(n)]
    splits = {"train_sft": (rows("uc-train", 1100), 3, "data"), "test_sft": (rows("uc-test", 100), 1, "data"),
              "train_gen": (rows("uc-gen", 20), 1, "data"), "test_gen": (rows("uc-gentest", 10), 1, "data")}
    return _write(root / "ultrachat_200k", {"default": splits}, features,
                  "language:\n- en\nlicense: mit\npretty_name: UltraChat 200k\ntask_categories:\n- text-generation")


def ultrafeedback(root: Path) -> Path:
    """HuggingFaceH4/ultrafeedback_binarized: prompt (string), prompt_id, chosen / rejected (whole conversations that
    repeat the prompt), messages, score_chosen / score_rejected; six splits."""
    from datasets import Features, Value

    features = Features({"prompt": Value("string"), "prompt_id": Value("string"), "chosen": _messages_feature(),
                         "rejected": _messages_feature(), "messages": _messages_feature(),
                         "score_chosen": Value("float64"), "score_rejected": Value("float64")})

    def rows(tag, n):
        out = []
        for i in range(n):
            prompt = f"{tag} {i}: say yes?"
            chosen = [{"content": prompt, "role": "user"}, {"content": f"yes {i}.", "role": "assistant"}]
            rejected = [{"content": prompt, "role": "user"}, {"content": f"no {i}.", "role": "assistant"}]
            out.append({"prompt": prompt, "prompt_id": _id(prompt), "chosen": chosen, "rejected": rejected,
                        "messages": chosen, "score_chosen": 8.0, "score_rejected": 4.5})
        return out
    sizes = {"train_prefs": 2100, "train_sft": 20, "test_prefs": 100, "test_sft": 10, "train_gen": 10, "test_gen": 10}
    splits = {split: (rows(split, n), 1, "data") for split, n in sizes.items()}
    return _write(root / "ultrafeedback_binarized", {"default": splits}, features,
                  "language:\n- en\nlicense: mit\npretty_name: UltraFeedback Binarized\ntask_categories:\n"
                  "- text-generation")


def cai_conversations(root: Path) -> Path:
    """HuggingFaceH4/cai-conversation-harmless: index, prompt, the critique / revision turns, messages, chosen,
    rejected; splits train_sft/test_sft/train_prefs/test_prefs."""
    from datasets import Features, Value

    turn = {"content": Value("string"), "role": Value("string")}
    features = Features({"index": Value("int64"), "prompt": Value("string"), "init_prompt": turn,
                         "init_response": turn, "critic_prompt": turn, "critic_response": turn,
                         "revision_prompt": turn, "revision_response": turn, "messages": _messages_feature(),
                         "chosen": _messages_feature(), "rejected": _messages_feature()})

    def rows(tag, n):
        out = []
        for i in range(n):
            prompt = f"{tag} request {i}?"
            revised = [{"content": prompt, "role": "user"}, {"content": f"a careful reply {i}.", "role": "assistant"}]
            first = [{"content": prompt, "role": "user"}, {"content": f"a careless reply {i}.", "role": "assistant"}]
            out.append({"index": i, "prompt": prompt, "init_prompt": revised[0], "init_response": first[1],
                        "critic_prompt": {"content": "critique it", "role": "user"},
                        "critic_response": {"content": "it is careless", "role": "assistant"},
                        "revision_prompt": {"content": "revise it", "role": "user"}, "revision_response": revised[1],
                        "messages": revised, "chosen": revised, "rejected": first})
        return out
    sizes = {"train_sft": 1000, "test_sft": 20, "train_prefs": 20, "test_prefs": 10}
    return _write(root / "cai-conversation-harmless", {"default": {s: (rows(s, n), 1, "data")
                                                                   for s, n in sizes.items()}},
                  features, "license: apache-2.0\npretty_name: CAI conversation harmless")


SMOLTALK_SFT_SPLITS = ("everyday_conversations_no_think", "systemchats_no_think", "magpie_ultra_no_think",
                       "multi_turn_reasoning_if_think")


def smoltalk2(root: Path) -> Path:
    """HuggingFaceTB/smoltalk2's SFT config: messages, chat_template_kwargs (custom_instructions, enable_thinking,
    python_tools, xml_tools), source; one split per source, under SFT/."""
    from datasets import Features, Sequence, Value

    features = Features({"messages": _messages_feature(), "source": Value("string"), "chat_template_kwargs": {
        "custom_instructions": Value("string"), "enable_thinking": Value("bool"),
        "python_tools": Sequence(Value("string")), "xml_tools": Sequence(Value("string"))}})

    def rows(split, n):
        think = split.endswith("_think") and not split.endswith("no_think")
        return [{"messages": _chat(split[:8], i, turns=1), "source": split,
                 "chat_template_kwargs": {"custom_instructions": "", "enable_thinking": think, "python_tools": [],
                                          "xml_tools": []}} for i in range(n)]
    splits = {s: (rows(s, 12), 1, "SFT") for s in SMOLTALK_SFT_SPLITS}
    return _write(root / "smoltalk2", {"SFT": splits}, features, "license: apache-2.0\npretty_name: SmolTalk2")


def imdb(root: Path) -> Path:
    """stanfordnlp/imdb: text, label; config plain_text; splits train/test/unsupervised."""
    from datasets import ClassLabel, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})

    def rows(tag, n):
        return [{"text": f"{tag} review {i}: the film was {'good' if i % 2 else 'dull'}.", "label": i % 2}
                for i in range(n)]
    splits = {"train": (rows("train", 120), 1, "plain_text"), "test": (rows("test", 20), 1, "plain_text"),
              "unsupervised": (rows("unsup", 10), 1, "plain_text")}
    return _write(root / "imdb", {"plain_text": splits}, features,
                  textwrap.dedent("""\
                      language:
                      - en
                      license: other
                      pretty_name: IMDB"""))


def write_all(root: Path) -> dict[str, Path]:
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    root.mkdir(parents=True, exist_ok=True)
    return {f.__name__: f(root) for f in (ultrachat, ultrafeedback, cai_conversations, smoltalk2, imdb)}
