"""`instructkit estimate`'s arithmetic against hand-computed cases (no model is loaded: config counting is meta)."""

from pathlib import Path

import pytest

from instructkit.modeling.memory import (
    CPU_OVERHEAD,
    GPU_OVERHEAD,
    NF4_BYTES,
    Setup,
    Shape,
    breakdown,
    estimate,
    launch_setup,
    parse_size,
    shape_from_config,
)

ROOT = Path(__file__).resolve().parent.parent
# 1,000 parameters, of which 400 in two 10 -> 20 linear layers; 2 layers, hidden 10, kv 4, MLP 20, vocab 50
SHAPE = Shape(params=1000, linear=[("q_proj", 10, 20, 2)], hidden=10, intermediate=20, layers=2, kv_dim=4, vocab=50)


def test_full_fp32_on_one_cpu_process():
    b = breakdown(SHAPE, Setup(mode="full", batch=1, seq=2, checkpointing=False))
    assert (b["weights"], b["gradients"], b["optimizer"]) == (4000, 4000, 8000)  # fp32: 4 + 4 + 2 x 4 bytes
    # 2 tokens x (6*10 + 4*4 + 4*20 = 156 values) x 2 layers x 4 bytes, + 2 x 2 tokens x 50 logits x 4 bytes
    assert b["activations"] == 2 * 156 * 2 * 4 + 2 * 2 * 50 * 4
    assert b["total"] == 4000 + 4000 + 8000 + 2496 + 800 + CPU_OVERHEAD


def test_activation_checkpointing_keeps_one_value_per_token_per_layer_plus_one_layer():
    b = breakdown(SHAPE, Setup(mode="full", batch=1, seq=2, checkpointing=True))
    assert b["activations"] == 2 * (10 * 2 + 156) * 4 + 800


def test_zero2_bf16_deepspeed_shards_gradients_and_the_fp32_optimizer_state():
    b = breakdown(SHAPE, Setup(mode="full", strategy="zero2", devices=4, gpu=True, dtype_bytes=2, deepspeed=True))
    assert (b["weights"], b["gradients"], b["optimizer"]) == (2000, 500, 3000)  # 12 bytes / param over 4
    assert b["overhead"] == GPU_OVERHEAD


def test_zero3_shards_weights_plus_one_gathered_layer_and_offload_moves_them_to_host():
    z3 = breakdown(SHAPE, Setup(mode="full", strategy="zero3", devices=4, gpu=True, dtype_bytes=2, deepspeed=True))
    assert z3["weights"] == 2000 / 4 + 2000 / 2
    off = breakdown(SHAPE, Setup(mode="full", strategy="zero3_offload", devices=4, gpu=True, dtype_bytes=2,
                                 deepspeed=True))
    assert (off["weights"], off["gradients"], off["optimizer"]) == (1000, 0, 0)
    assert off["host_offload"] == 2000 / 4 + 3000 + 500


def test_lora_and_qlora_count_r_times_in_plus_out_per_adapted_layer():
    lora = breakdown(SHAPE, Setup(mode="lora", lora_r=2))  # fp32 base, fp32 adapters
    trainable = 2 * (10 + 20) * 2
    assert lora["trainable_params"] == trainable == 120
    assert (lora["weights"], lora["gradients"], lora["optimizer"]) == (4000 + 480, 480, 960)
    q = breakdown(SHAPE, Setup(mode="qlora", lora_r=2, gpu=True, dtype_bytes=2, double_quant=True))
    assert q["weights"] == pytest.approx(400 * NF4_BYTES[True] + 600 * 2 + 120 * 2)
    assert (q["gradients"], q["optimizer"]) == (240, 480)  # bf16 adapters, AdamW states in bf16
    assert breakdown(SHAPE, Setup(mode="lora", lora_r=2, lora_targets=("k_proj",)))["trainable_params"] == 0


def test_shape_from_a_config_counts_by_hand():
    from transformers import LlamaConfig

    shape = shape_from_config(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False))
    # embeddings 256 + q 64 + k 32 + v 32 + o 64 + gate/up/down 3 x 128 + 3 norms x 8 + lm_head 256
    assert shape.params == 256 + 64 + 32 + 32 + 64 + 384 + 24 + 256
    assert sorted((n, i, o) for n, i, o, _ in shape.linear) == [
        ("down_proj", 16, 8), ("gate_proj", 8, 16), ("k_proj", 8, 4), ("o_proj", 8, 8), ("q_proj", 8, 8),
        ("up_proj", 8, 16), ("v_proj", 8, 4)]
    assert (shape.kv_dim, shape.hidden, shape.intermediate, shape.vocab) == (4, 8, 16, 32)


def test_launch_configs_and_sizes():
    cfgs = ROOT / "accelerate_configs"
    assert launch_setup(str(cfgs / "deepspeed_zero3_offload.yaml")) == {"devices": 2, "deepspeed": True,
                                                                        "strategy": "zero3_offload"}
    assert launch_setup(str(cfgs / "deepspeed_zero2.yaml"))["strategy"] == "zero2"
    assert launch_setup(str(cfgs / "fsdp.yaml"))["strategy"] == "zero3"
    assert launch_setup(str(cfgs / "ddp.yaml"))["strategy"] == "ddp"
    assert parse_size("24GB") == 24e9 and parse_size("80 GiB") == 80 * 2**30


def test_estimate_reads_a_recipe_config_and_says_whether_it_fits(tmp_path):
    from transformers import LlamaConfig

    model = tmp_path / "model"
    LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1).save_pretrained(model)
    cfg = tmp_path / "x.yaml"
    cfg.write_text(f"model_name_or_path: {model}\nlora_r: 2\nper_device_train_batch_size: 1\nmax_length: 4\n")
    r = estimate(str(cfg), gpus=2, gpu_memory="1GB")
    assert r["setup"]["mode"] == "lora" and [row["strategy"] for row in r["rows"]] == ["ddp", "zero2", "zero3",
                                                                                     "zero3_offload"]
    assert all(row["fits"] for row in r["rows"])
    assert not any(row["fits"] for row in estimate(str(cfg), gpus=2, gpu_memory="0.5GB")["rows"])  # overhead 0.8


def test_a_misspelled_key_is_refused_like_in_a_recipe_and_dpo_configs_are_read(tmp_path):
    from instructkit.errors import InstructkitError

    cfg = tmp_path / "my.yaml"
    cfg.write_text("model_name_or_path: embedded\nmax_lenght: 512\n")
    with pytest.raises(InstructkitError, match=r"unknown key 'max_lenght' in .*my.yaml — did you mean 'max_length'\?"):
        estimate(str(cfg))
    from instructkit.modeling.memory import recipe_config, setup_from_config

    dpo = recipe_config(str(ROOT / "recipes" / "configs" / "dpo.yaml"))  # DPO's keys (beta, ...) are known keys
    assert setup_from_config(dpo, None, gpu=False).mode == "full"        # use_peft: false beside lora_* keys


def test_a_per_model_config_is_checked_against_the_hardware_it_is_meant_for():
    r = estimate(str(ROOT / "recipes" / "configs" / "qwen2.5-7b" / "sft_qlora.yaml"))  # Qwen/Qwen2.5-7B's shape
    assert r["intended"] == "1 GPU x 24 GB (single_gpu.yaml)" and r["limit_bytes"] == 24e9 and r["devices"] == 1
    assert r["shape"]["vocab"] == 152064 and 7.6e9 < r["shape"]["params"] < 7.7e9 and r["setup"]["mode"] == "qlora"
    other = estimate(str(ROOT / "recipes" / "configs" / "qwen2.5-7b" / "sft_qlora.yaml"), gpus=1, gpu_memory="8GB")
    assert other["intended"] is None and other["rows"][0]["fits"] is False  # other hardware when asked
    dpo = estimate(str(ROOT / "recipes" / "configs" / "qwen2.5-7b" / "dpo.yaml"))
    full = estimate(str(ROOT / "recipes" / "configs" / "qwen2.5-7b" / "sft_full.yaml"))
    assert dpo["setup"]["reference"] and dpo["setup"]["sequences"] == 2 and not full["setup"]["reference"]
    assert dpo["rows"][0]["strategy"] == "zero3" and dpo["devices"] == 8


def test_the_per_model_estimates_in_the_docs_are_current():
    """README.md and docs/launching.md show `instructkit estimate --shipped`; every config fits what it is meant for.
    Regenerate: INSTRUCTKIT_UPDATE_DOCS=1 python -m pytest tests/test_modeling_memory.py"""
    import os

    from instructkit.modeling.memory import shipped_table

    table = shipped_table()
    assert table.count("\n") == 17 and "**no**" not in table
    start, end = "-->\n", "\n<!-- end of per-model estimates -->"
    for page in (ROOT / "README.md", ROOT / "docs" / "launching.md"):
        text = page.read_text()
        head, rest = text.split("<!-- per-model estimates", 1)
        marker, rest = rest.split(start, 1)
        if os.environ.get("INSTRUCTKIT_UPDATE_DOCS") == "1":
            page.write_text(head + "<!-- per-model estimates" + marker + start + table + end + rest.split(end, 1)[1])
        assert page.read_text().split("<!-- per-model estimates", 1)[1].split(start, 1)[1].startswith(table + end), page
