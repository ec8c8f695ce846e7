"""The model card says what the run's files say: base, data, recipe + config, time, metrics, benchmarks, samples."""

import json

import yaml

CONFIG = {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "dataset_name": "data/mine.jsonl", "load_in_4bit": True,
          "learning_rate": 2e-4, "lr_scheduler_type": "cosine", "per_device_train_batch_size": 8,
          "gradient_accumulation_steps": 2, "max_length": 512, "hub_token": "<redacted>"}
METRICS = {
    "recipe": "sft_qlora", "seconds": 812.5,
    "machine": {"device": "cuda:0", "processes": 2, "precision": "bf16"},
    "train": {"train_runtime": 790.1, "train_loss": 1.2345, "epoch": 2.0},
    "data": {"format": "alpaca", "rows": {"train": 9500, "test": 500}, "skipped": {"output missing": 3},
             "truncated": 7},
    "exact_match": {"before": {"test": {"exact_match": 0.05, "n": 300, "stopped": 0.2}},
                    "after": {"test": {"exact_match": 0.813, "n": 300, "stopped": 0.99}}},
    "benchmarks": {"scores": {"mmlu/acc": 0.4567, "truthfulqa_mc2/acc": 0.41},
                   "protocol": {"num_fewshot": 5, "apply_chat_template": False, "limit": None}},
    "log_history": [{"loss": 2.0, "step": 10}, {"loss": 1.1, "step": 1250}],
}


def make_run(path):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (path / "metrics.json").write_text(json.dumps(METRICS))
    (path / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": "Qwen/Qwen2.5-0.5B", "r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "target_modules": ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "v_proj"]}))
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 500, "prompt": "old", "target": "x", "text": "y", "stopped": True},
        {"step": 1250, "prompt": "Reverse cat.", "target": "tac", "text": "tac", "stopped": True},
        {"step": 1250, "prompt": "Add 3 and 4.", "target": "7", "text": "77777", "stopped": False}]))
    (path / "training_curves.png").write_bytes(b"\x89PNG")
    return path


def test_card_reports_the_run(tmp_path):
    from huggingface_hub import ModelCard

    from instructkit.training.model_card import write_model_card

    path = write_model_card(make_run(tmp_path / "my-run"))
    card = ModelCard.load(path)
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B" and card.data.library_name == "peft"
    assert set(card.data.tags) == {"instructkit", "trl", "sft", "lora", "qlora"} and card.data.datasets is None
    text = card.text
    assert "A QLoRA adapter fine-tuned from `Qwen/Qwen2.5-0.5B` on `data/mine.jsonl` with instructkit's " \
           "`sft_qlora` recipe (TRL `SFTTrainer`)." in text
    assert "instructkit merge " in text and "never into 4-bit weights" in text
    assert "- LoRA: r=16, alpha=32, dropout=0.0, on q_proj, v_proj" in text
    assert "- rows: train 9,500, test 500" in text and "- skipped: output missing: 3" in text
    assert "| optimizer steps | 1250 |" in text and "| final training loss (mean over the run) | 1.234 |" in text
    assert "| training time | 790.1 s (whole run 812.5 s) |" in text and "| 8 × 2 × 2 |" in text
    assert "| test | 5.0% | 81.3% | 99% | 300 |" in text
    assert "| mmlu/acc | 0.4567 |" in text and "5-shot, chat template off" in text
    assert "![training curves](training_curves.png)" in text
    assert "## Sample generations (step 1250, greedy)" in text and "| Reverse cat. | tac | tac |" in text
    assert "| Add 3 and 4. | 77777 …(no end of turn) | 7 |" in text and "| old |" not in text
    config = text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(config) == CONFIG  # the resolved config, as saved (credentials already redacted)


def test_card_of_a_local_full_model_has_no_hub_ids(tmp_path):
    from instructkit.training.model_card import card_text

    run = tmp_path / "full"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model_name_or_path": "embedded", "dataset_name": "embedded"}))
    (run / "metrics.json").write_text(json.dumps({"recipe": "sft_full", "train": {}, "log_history": []}))
    text = card_text(run)
    assert "base_model" not in text.split("---")[1] and "library_name: transformers" in text
    assert "A full model fine-tuned from the embedded default" in text and "instructkit merge" not in text
    assert "No evaluation was run." in text


def test_card_shows_benchmark_deltas_with_intervals_and_the_picture(tmp_path):
    from instructkit.training.model_card import card_text

    run = make_run(tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["benchmarks"].update(
        before={"mmlu/acc": 0.40, "truthfulqa_mc2/acc": 0.42}, method="95% paired bootstrap intervals ...",
        compare="benchmarks/compare.md",
        deltas={"mmlu|acc": {"delta": 0.0567, "low": 0.031, "high": 0.082, "excludes_zero": True, "n": 14042},
                "truthfulqa_mc2|acc": {"delta": -0.01, "low": -0.04, "high": 0.02, "excludes_zero": False, "n": 817}})
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "benchmarks").mkdir()
    (run / "benchmarks" / "compare.png").write_bytes(b"\x89PNG")
    text = card_text(run)
    assert "| task / metric | before | after | Δ | 95 % CI | excludes 0 |" in text
    assert "| mmlu/acc | 0.4 | 0.4567 | +0.0567 | [+0.0310, +0.0820] | **yes** |" in text
    assert "| truthfulqa_mc2/acc | 0.42 | 0.41 | -0.0100 | [-0.0400, +0.0200] | no |" in text
    assert "![benchmarks before and after training](benchmarks/compare.png)" in text
    assert "[benchmarks/compare.md](benchmarks/compare.md)" in text and "95% paired bootstrap" in text
