"""Inputs the benchmarks share, built locally (no hub): the embedded data and model, TRL-form data, a 0.5B-shaped model.

    python benchmarks/assets.py embedded [--quick]   # -> JSON: model_dir, data_dir, spec
    python benchmarks/assets.py qwen05b              # -> JSON: model_dir of a random Qwen2.5-0.5B-shaped model
    python benchmarks/assets.py embedded_full        # -> JSON: the full embedded default (serving section)

`embedded`: the default preset's tokenizer, data and model shape, with pretraining cut to 256 facts (the throughput
and memory of a step do not depend on the weights; the real default pretrains for ~6 min). `--quick`: the test preset.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK  # noqa: E402

# Qwen2.5-0.5B's published config.json (shape only; the weights here are random)
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")


def embedded_spec(quick: bool):
    from instructkit.embedded import PRESETS

    return PRESETS["test"] if quick else dataclasses.replace(PRESETS["default"], pretrain_facts=256)


def embedded(quick: bool) -> dict:
    from instructkit.embedded import build_cached

    spec = embedded_spec(quick)
    assets = build_cached(spec)
    return {"model_dir": str(assets.model_dir), "data_dir": str(assets.data_dir), "spec": dataclasses.asdict(spec),
            "parameters": assets.info["parameters"], "build_seconds": assets.info["build_seconds"]}


def embedded_full() -> dict:
    """The embedded default as recipes use it: the full preset, pretrained in full (~3.5 min to build, cached)."""
    from instructkit.embedded import PRESETS, build_cached

    built = build_cached(PRESETS["default"])
    return {"model_dir": str(built.model_dir), "data_dir": str(built.data_dir),
            "spec": dataclasses.asdict(PRESETS["default"]), "parameters": built.info["parameters"],
            "build_seconds": built.info["build_seconds"]}


def qwen05b(tokenizer_dir: str) -> dict:
    """Random weights in Qwen2.5-0.5B's shape, saved in bf16 like the published checkpoint, with our tokenizer
    (its 1,024 ids fit the 151,936-row embedding)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = WORK / "qwen2.5-0.5b-shape"
    if (out / "model.safetensors").exists():
        return {"model_dir": str(out), "config": QWEN25_05B}
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(**QWEN25_05B, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return {"model_dir": str(out), "config": QWEN25_05B, "parameters": sum(p.numel() for p in model.parameters())}


def trl_form_data(data_dir: str, out_dir: Path, rows: int | None) -> dict:
    """The embedded alpaca rows converted as instructkit converts them (conversational prompt/completion), for
    `trl sft` (which reads TRL's forms only), plus the same rows in alpaca form for the recipes and the padded loop."""
    from instructkit.data.formats import convert_row

    src = [json.loads(l) for l in open(Path(data_dir) / "train.jsonl")][:rows]
    (out_dir / "trl").mkdir(parents=True, exist_ok=True)
    (out_dir / "alpaca").mkdir(parents=True, exist_ok=True)
    with open(out_dir / "trl" / "train.jsonl", "w") as f:
        f.writelines(json.dumps(convert_row(r, "alpaca")) + "\n" for r in src)
    with open(out_dir / "alpaca" / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in src)
    return {"trl": str(out_dir / "trl"), "alpaca": str(out_dir / "alpaca" / "train.jsonl"), "rows": len(src)}


if __name__ == "__main__":
    what, quick = sys.argv[1], "--quick" in sys.argv
    if what == "embedded":
        print(json.dumps(embedded(quick)))
    elif what == "embedded_full":
        print(json.dumps(embedded_full()))
    elif what == "qwen05b":
        print(json.dumps(qwen05b(sys.argv[2])))
    else:
        raise SystemExit(f"unknown asset {what}")
