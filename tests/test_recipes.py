"""Each recipe launched for real (`accelerate launch ...`) for a few steps; outputs reload and generate."""

import json

import pytest

from conftest import launch

FEW_STEPS = ["--max_steps", "3", "--per_device_train_batch_size", "4", "--eval_max_samples", "8",
             "--logging_steps", "1"]


def assert_ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["sft_full", "sft_lora", "sft_qlora"])
def test_recipe_trains_saves_and_reloads(recipe, tmp_path, embedded):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / recipe
    proc = launch(recipe, *FEW_STEPS, "--output_dir", str(out))
    assert_ok(proc)
    assert "before training: test exact match" in proc.stdout and "after training" in proc.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["train_loss"] > 0 and metrics["data"]["format"] == "alpaca"
    assert set(metrics["exact_match"]["after"]) == {"test", "test_phrasings"}
    assert (out / "config.yaml").is_file() and (out / "chat_template.jinja").is_file()
    assert not list(out.glob("*.bin")), "safetensors only"
    # every run: sample generations at the end (every 250 steps by default), training curves, model card
    assert "[instructkit] samples at step 3:\n  '" in proc.stdout
    assert {json.loads(line)["step"] for line in (out / "samples.jsonl").read_text().splitlines()} == {3}
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    assert f"instructkit's `{recipe}` recipe" in card and "| test |" in card and "```yaml\n" in card

    tok = AutoTokenizer.from_pretrained(out)
    if recipe == "sft_full":
        model = AutoModelForCausalLM.from_pretrained(out)
        base = AutoModelForCausalLM.from_pretrained(embedded.model_dir)
        assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    else:
        from peft import AutoPeftModelForCausalLM
        from safetensors.torch import load_file

        adapter = load_file(out / "adapter_model.safetensors")
        assert adapter and all(t.dtype == torch.float32 for t in adapter.values()), "fp32 adapters on CPU"
        model = AutoPeftModelForCausalLM.from_pretrained(out)
        assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters()), "adapter trained"
        targets = {t.split(".")[-1] for t in json.loads((out / "adapter_config.json").read_text())["target_modules"]}
        assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= targets
    enc = tok.apply_chat_template([{"role": "user", "content": "Reverse cat."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] > enc["input_ids"].shape[1]


@pytest.mark.slow
def test_recipe_trains_on_a_local_alpaca_file_with_config_and_override(tmp_path, embedded):
    rows = [{"instruction": f"Echo {w}", "input": "", "output": w} for w in ("alpha", "beta", "gamma", "delta")] * 5
    data_file = tmp_path / "mine.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "mine.yaml"
    config.write_text(f"model_name_or_path: {embedded.model_dir}\ndataset_name: {data_file}\n"
                      f"output_dir: {tmp_path / 'out'}\nlearning_rate: 1.0e-3\nmax_steps: 2\n"
                      "per_device_train_batch_size: 4\nreport_to: none\ntest_split_size: 4\n")
    proc = launch("sft_full", "--config", str(config), "--learning_rate", "5e-4")
    assert_ok(proc)
    saved = (tmp_path / "out" / "config.yaml").read_text()
    assert "learning_rate: 0.0005" in saved and f"dataset_name: {data_file}" in saved
    assert "data: format=alpaca train=16 test=4" in proc.stdout


@pytest.mark.slow
# One launch for a bad setting, one for bad data (found after the config parsed); every message is checked in-process
# word for word in tests/test_errors.py, which needs no launch per case.
@pytest.mark.parametrize("args, message", [
    (["--max_lenght", "64"], "unknown flag '--max_lenght' on the command line — did you mean '--max_length'?"),
    (["--dataset_name", "./missing.jsonl"], "data file ./missing.jsonl does not exist"),
])
def test_bad_input_is_one_clear_line_and_nonzero_exit(args, message, tmp_path):
    # `accelerate launch -q`: without -q, accelerate re-raises any non-zero exit of the script as its own
    # CalledProcessError traceback (that part is accelerate's, see the next test).
    proc = launch("sft_qlora", *args, "--output_dir", str(tmp_path / "o"), timeout=300, quiet=True)
    assert proc.returncode != 0, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_plain_accelerate_launch_adds_only_its_own_wrapper_traceback(tmp_path):
    proc = launch("sft_full", "--max_lenght", "64", "--output_dir", str(tmp_path / "o"), timeout=300)
    assert proc.returncode != 0
    assert "error: unknown flag '--max_lenght'" in proc.stderr
    assert "CalledProcessError" in proc.stderr  # accelerate's launcher, reporting exit status 2
    for library in ("site-packages/trl", "site-packages/transformers", "site-packages/datasets", "site-packages/peft"):
        assert library not in proc.stderr


@pytest.mark.slow
def test_first_use_builds_the_embedded_default_in_a_child_process(tmp_path):
    """A fresh cache: the recipe builds the embedded default itself (in a clean child process), then trains."""
    cache = tmp_path / "cache"
    proc = launch("sft_full", "--max_steps", "1", "--per_device_train_batch_size", "2", "--eval_exact_match", "false",
                  "--output_dir", str(tmp_path / "o"), env={"INSTRUCTKIT_CACHE": str(cache)})
    assert_ok(proc)
    assert len(list(cache.glob("embedded-*/BUILD.json"))) == 1
    assert "building the embedded default" in proc.stderr


@pytest.mark.slow
def test_the_replay_recipe_mixes_the_base_prose_into_sft(tmp_path, embedded):
    """recipes/configs/sft_full_replay.yaml: instructions plus the base's pretraining prose, text rows trained on every
    token, held-out exact match on the default's own held-out splits."""
    out = tmp_path / "replay"
    proc = launch("sft_full", "--config", "recipes/configs/sft_full_replay.yaml", *FEW_STEPS, "--output_dir", str(out))
    assert_ok(proc)
    metrics = json.loads((out / "metrics.json").read_text())
    mixture = {m["path"]: m for m in metrics["data"]["mixture"]}
    assert mixture["embedded_prose"]["format"] == "text" and mixture["embedded"]["format"] == "alpaca"
    tokens = metrics["data"]["tokens"]
    assert tokens["text"]["rows"] == mixture["embedded_prose"]["used"] > 0
    assert tokens["text"]["trained"] == tokens["text"]["tokens"] and tokens["conversations"]["trained"] < \
        tokens["conversations"]["tokens"]
    assert set(metrics["exact_match"]["after"]) == {"test", "test_phrasings"}
    assert "data: tokenized by instructkit (assistant turns found by the template's markers)" in proc.stdout
