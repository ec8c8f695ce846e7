"""The per-model configs (recipes/configs/<model>/*.yaml: published hyperparameters) launched for 2 steps, the model
swapped on the command line for a tiny one of the same architecture and tokenizer family (tests/families.py), on
short local rows. On the Qwen2.5 family every recipe and command then runs on what they trained: sft_full / sft_lora /
sft_qlora / dpo, merge, chat, generate and eval, on its stock chat template (masks by prefix rendering) with tool
calls and content parts in the data. The other families launch sft_full and dpo from its output (their template on
instructions and on preference pairs); their sft_lora / sft_qlora configs, which differ from sft_full in the
trainer's and LoRA's numbers, are parsed and resolved as those recipes do it and checked key by key (a launch each
would add ~1.5 min to the suite; 4-bit and LoRA loading run on the Qwen2.5 family and the embedded default)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, launch
from families import CONFIG_FAMILIES, chat_rows, preference_rows, write_jsonl
from test_recipes import assert_ok

CLI = str(Path(sys.executable).with_name("instructkit"))
CONFIGS = ROOT / "recipes" / "configs"
RECIPES = ("sft_full", "sft_lora", "sft_qlora", "dpo")
MODELS = ("qwen2.5-7b", "llama-3.1-8b", "mistral-7b", "smollm2-1.7b")


def data_dirs(root: Path, tools: bool) -> tuple[Path, Path]:
    """A conversation folder (train + test) and a preference folder, a few short rows each."""
    chats, pairs = root / "chats", root / "pairs"
    write_jsonl(chats / "train.jsonl", chat_rows(tools))
    write_jsonl(chats / "test.jsonl", chat_rows(False)[:2])
    write_jsonl(pairs / "train.jsonl", preference_rows())
    write_jsonl(pairs / "test.jsonl", preference_rows()[:2])
    return chats, pairs


def swapped(recipe: str, model: str, data: Path, out: Path) -> list[str]:
    """The overrides: the tiny model, the local data (its splits), the output dir, 2 steps. Nothing else changes."""
    return ["--config", str(CONFIGS / model / f"{recipe}.yaml"), "--model_name_or_path", str(data.parent / "model"),
            "--dataset_name", str(data), "--dataset_train_split", "train", "--dataset_test_split", "test",
            "--output_dir", str(out / recipe), "--max_steps", "2"]


OVERRIDDEN = {"model_name_or_path", "dataset_name", "dataset_train_split", "dataset_test_split", "output_dir", "max_steps"}
RESOLVED = {"padding_free", "lora_target_modules", "report_to"}  # TRL's collator; [all-linear] -> all-linear; none -> []


def assert_ran_as_shipped(saved: Path, shipped: Path) -> None:
    """Every key of the shipped config reached the run unchanged (config.yaml is the resolved config it ran)."""
    import yaml

    ran, config = yaml.safe_load(saved.read_text()), yaml.safe_load(shipped.read_text())
    changed = {k: (v, ran.get(k)) for k, v in config.items() if k not in OVERRIDDEN | RESOLVED and ran.get(k) != v}
    assert not changed, f"{shipped}: {changed}"


def prepared(model: str, family, root: Path) -> Path:
    """The family's tiny model and the data folders under `root` (built in the test process, one at a time)."""
    import shutil

    fam = family(CONFIG_FAMILIES[model])
    shutil.copytree(fam.model_dir, root / "model")
    data_dirs(root, tools=model == "qwen2.5-7b")
    return root


LAUNCHED = {"qwen2.5-7b": RECIPES}  # the other families: sft_full and dpo (see the module docstring)
FIXED = {"sft_lora": {"use_peft": True, "load_in_4bit": False}, "sft_qlora": {"use_peft": True, "load_in_4bit": True}}


def run_configs(model: str, root: Path) -> dict:
    """The launched configs of `model`, in order (dpo starts from sft_full's output): {recipe: finished process}. One torch thread each: two launches share the 2 cores."""
    procs = {}
    for recipe in LAUNCHED.get(model, ("sft_full", "dpo")):
        args = swapped(recipe, model, root / ("pairs" if recipe == "dpo" else "chats"), root / "out")
        if recipe == "dpo":
            args[args.index("--model_name_or_path") + 1] = str(root / "out" / "sft_full")
        procs[recipe] = launch(recipe, *args, env={"INSTRUCTKIT_NUM_THREADS": "1"})
        assert_ok(procs[recipe])
    return procs


def resolved_as_dict(recipe: str, model: str, root: Path, tmp: Path) -> Path:
    """The config.yaml a launch of `recipe` would write first (parsed with the recipe's fixed keys, resolved)."""
    from instructkit.training.sft import parse_sft_config

    args = swapped(recipe, model, root / "chats", tmp)
    config = parse_sft_config(args, fixed=FIXED[recipe], check_output=False)
    return config.write(tmp / f"{recipe}.yaml")


@pytest.fixture(scope="module")
def ran(family, tmp_path_factory):
    """{model: (its root, {recipe: process})} for every model's configs; two models' runs at a time (a launch
    leaves a core idle for much of its time: imports, data preparation)."""
    from concurrent.futures import ThreadPoolExecutor

    roots = {m: prepared(m, family, tmp_path_factory.mktemp(m)) for m in MODELS}
    with ThreadPoolExecutor(2) as pool:
        futures = {m: pool.submit(run_configs, m, root) for m, root in roots.items()}
    return {m: (roots[m], futures[m].result()) for m in MODELS}


@pytest.fixture(scope="module")
def qwen(ran):
    return ran["qwen2.5-7b"]


@pytest.mark.slow
def test_qwen_configs_train_on_the_stock_template_with_prefix_masks(qwen):
    root, procs = qwen
    for recipe in ("sft_full", "sft_lora", "sft_qlora"):
        out, log = root / "out" / recipe, procs[recipe].stdout
        assert "data: tokenized by instructkit (assistant turns found by rendering prefixes of the chat template)" \
               in log, log[-3000:]
        assert "preflight ok: 6 training rows, end of turn '<|im_end|>' trained, pad '<|endoftext|>', no BOS" in log
        saved = (out / "config.yaml").read_text()
        assert "assistant_masks: prefix" in saved and "learning_rate: " in saved
        metrics = json.loads((out / "metrics.json").read_text())
        tokens = metrics["data"]["tokens"]["conversations"]
        assert tokens["rows"] == 6 and 0 < tokens["trained"] < tokens["tokens"]
        assert metrics["train"]["train_loss"] > 0 and (out / "chat_template.jinja").is_file()
    for recipe in RECIPES:
        assert_ran_as_shipped(root / "out" / recipe / "config.yaml", CONFIGS / "qwen2.5-7b" / f"{recipe}.yaml")
    assert "held-out preference pairs: " in procs["dpo"].stdout and "preflight ok" in procs["dpo"].stdout


@pytest.mark.slow
def test_merge_chat_generate_and_eval_what_the_qwen_configs_trained(qwen, tmp_path, capsys):
    from instructkit.commands.main import main

    root, _ = qwen
    merged = tmp_path / "merged"
    main(["merge", str(root / "out" / "sft_lora"), str(merged)])
    assert "max |logit difference| merged vs adapter" in capsys.readouterr().out
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [
        {"prompt": "Capital of France?"},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]}])
    for model in (merged, root / "out" / "sft_qlora", root / "out" / "dpo"):
        main(["generate", str(model), "--input", str(prompts), "--output", str(tmp_path / "answers.jsonl"),
              "--max_new_tokens", "4"])
        answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
        assert len(answers) == 2 and all(isinstance(a["generation"], str) for a in answers)
    chat = subprocess.run([CLI, "chat", str(root / "out" / "sft_full"), "--max_new_tokens", "4"], text=True,
                          input="Capital of France?\n/exit\n", capture_output=True, timeout=300)
    assert chat.returncode == 0, chat.stderr[-3000:]
    main(["eval", "--models", str(root / "out" / "sft_full"), "--tasks", "mmlu_anatomy", "--num_fewshot", "0",
          "--data_dir", "fixture", "--limit", "2", "--output_dir", str(tmp_path / "eval")])
    result = json.loads(next((tmp_path / "eval").glob("*/benchmarks.json")).read_text())
    assert result["n-samples"]["mmlu_anatomy"]["effective"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["llama-3.1-8b", "mistral-7b", "smollm2-1.7b"])
def test_per_model_configs_run_two_steps_on_a_tiny_model_of_their_architecture(model, ran, tmp_path):
    root, procs = ran[model]
    assert set(procs) == {"sft_full", "dpo"}
    for recipe, proc in procs.items():
        assert "preflight ok" in proc.stdout, (recipe, proc.stdout[-3000:])
        assert_ran_as_shipped(root / "out" / recipe / "config.yaml", CONFIGS / model / f"{recipe}.yaml")
    for recipe in FIXED:  # parsed and resolved as the recipe does it
        assert_ran_as_shipped(resolved_as_dict(recipe, model, root, tmp_path), CONFIGS / model / f"{recipe}.yaml")
