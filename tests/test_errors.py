"""Every bad input ends in one clear message naming the file / row / key and the fix: the table of them.

`CASES` is the single source of docs/errors.md: each case triggers its bad input in-process through the same
function a recipe calls, and the message it prints (paths under the test's folder shown as `<tmp>`) must appear in
the doc word for word. Regenerate the doc after changing a message or a case:

    INSTRUCTKIT_UPDATE_DOCS=1 python -m pytest tests/test_errors.py -q

The last tests launch real recipes: a non-finite loss stops a run with exit status 2 and keeps its last good
checkpoint, and INSTRUCTKIT_DEBUG=1 shows the traceback the plain message hides.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Callable

import pytest

from conftest import ROOT, launch, make_tokenizer, sft_trainer, tiny_model
from instructkit import catalog, chat_templates
from instructkit.config.arguments import EvaluateArguments, InstructkitArguments
from instructkit.config.parsing import parse_args as parse_recipe_args
from instructkit.config.resolved import RecipeConfig, resolved_config
from instructkit.data.formats import convert_row
from instructkit.data.loading import load_instructions, load_preferences
from instructkit.data.sources import read_source
from instructkit.errors import InstructkitError
from instructkit.modeling.files import check_local_path
from instructkit.modeling.loading import load_model, load_tokenizer
from instructkit.training import outputs
from instructkit.training.sft import loss_settings, parse_sft_config

DOC = ROOT / "docs" / "errors.md"
UPDATE = os.environ.get("INSTRUCTKIT_UPDATE_DOCS") == "1"
GOOD = [{"instruction": f"Reverse w{i}", "input": "", "output": f"{i}w"} for i in range(6)]


class Env:
    """A scratch folder (also the working directory) and the calls a recipe makes, for one case."""

    def __init__(self, tmp: Path):
        self.tmp = tmp

    def write(self, name: str, text: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        return str(path)

    def jsonl(self, name: str, rows: list) -> str:
        return self.write(name, "".join(json.dumps(r) + "\n" for r in rows))

    def parse(self, *args: str):
        from trl import ModelConfig, SFTConfig

        return parse_recipe_args((InstructkitArguments, SFTConfig, ModelConfig), list(args))

    def yaml(self, text: str):
        return self.parse("--config", self.write("config.yaml", text))

    def sft_data(self, path: str, **kw):
        return load_instructions(InstructkitArguments(dataset_name=path, **kw), seed=0)

    def bad_row(self, row: dict, fmt_rows: list = GOOD):
        """The data set with `row` as its 3rd row."""
        return self.sft_data(self.jsonl("data.jsonl", fmt_rows[:2] + [row] + fmt_rows[2:]))

    def loss(self, rows: list, *args: str, tokenizer=None):
        """The loss settings for `rows` under the options `args`, as `SFTRun.start` resolves them."""
        _, report = self.sft_data(self.jsonl("data.jsonl", rows), test_split_size=0)
        loss_settings(self.parse(*args)[1], report, tokenizer)

    def model_dir(self, name: str, files: dict) -> str:
        for file, text in files.items():
            self.write(f"{name}/{file}", text if isinstance(text, (str, bytes)) else json.dumps(text))
        return str(self.tmp / name)

    def load_model(self, name: str, trust_remote_code: bool = False):
        model_args = NS(model_name_or_path=name, model_revision="main", dtype="float32", use_peft=False,
                        attn_implementation=None)
        training_args = NS(trust_remote_code=trust_remote_code, output_dir=str(self.tmp))
        return load_model(RecipeConfig(InstructkitArguments(), training_args, model_args), None)

    def load_tokenizer(self, name: str):
        return load_tokenizer(RecipeConfig(NS(tokenizer_name_or_path=None, chat_template=None, dataset_format="auto"),
                                           NS(trust_remote_code=False), NS(model_name_or_path=name, model_revision="main")))

    def prepare(self, out: str, overwrite: bool = False, resume: str | None = None, *args: str):
        parsed = self.parse("--output_dir", out, *args)
        return outputs.prepare_output_dir(NS(output_dir=out, resume_from_checkpoint=resume), overwrite,
                                          resolved_config(*parsed), log=lambda _: None)

    def snapshot(self, name: str = "snap", rows: list | None = None) -> str:
        """A folder laid out like a hub dataset: README.md `configs:` with splits train_sft / test_sft, Parquet
        shards under data/."""
        from datasets import Dataset

        rows = rows or CHAT
        self.write(f"{name}/README.md", "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train_sft\n"
                                        "    path: data/train_sft-*\n  - split: test_sft\n    path: data/test_sft-*\n---\n")
        for split in ("train_sft", "test_sft"):
            (self.tmp / name / "data").mkdir(parents=True, exist_ok=True)
            Dataset.from_list(rows).to_parquet(str(self.tmp / name / "data" / f"{split}-00000-of-00001.parquet"))
        return str(self.tmp / name)

    def mixture(self, entry: str, extra: str = ""):
        """A config whose handbook-form dataset_mixture has one entry (YAML lines), read and its data loaded."""
        parsed = self.yaml(f"dataset_mixture:\n  datasets:\n    - {entry}\n{extra}")
        return load_instructions(parsed[0], seed=0)

    def checkpoint(self, out: str, step: int, complete: bool = True) -> str:
        files = {"model.safetensors": b""}  # contents are not what these cases are about
        if complete:
            files["trainer_state.json"] = json.dumps({"global_step": step})
        return self.model_dir(f"{Path(out).name}/checkpoint-{step}", files)


def nonfinite_loss(e: Env):
    """A real divergence: a learning rate of 1e30 turns the weights to ~1e30 after one step, and the next forward
    overflows float32. Checkpoints every step; the callback a recipe run adds."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from instructkit.training.callbacks import StopOnNonFiniteLoss

    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "chatml")
    rows = [convert_row(r, "alpaca") for r in GOOD]
    args = SFTConfig(output_dir=str(e.tmp / "run"), bf16=False, use_cpu=True, report_to="none", max_length=64,
                     learning_rate=1e30, max_steps=4, save_strategy="steps", save_steps=1, logging_steps=1,
                     per_device_train_batch_size=2, activation_checkpointing=False, disable_tqdm=True)
    trainer = SFTTrainer(model=tiny_model(tok), args=args, processing_class=tok, train_dataset=Dataset.from_list(rows))
    trainer.add_callback(StopOnNonFiniteLoss())
    trainer.train()


def prompts_fill_max_length(e: Env):
    from instructkit.training import preflight

    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "chatml")
    rows = [convert_row({"instruction": "Reverse cat. " * 20, "output": "tac"}, "alpaca")] * 2
    preflight.check(*sft_trainer(tok, rows, "alpaca", max_length=16))


def other_config_checkpoints(e: Env):
    out = str(e.tmp / "out")
    e.prepare(out, False, None, "--learning_rate", "1e-3")  # the first run starts: writes out/config.yaml
    e.checkpoint(out, 3)
    e.prepare(out, False, None, "--learning_rate", "5e-4")


def no_template_tokenizer(e: Env):
    make_tokenizer().save_pretrained(e.tmp / "tok")
    e.load_tokenizer(str(e.tmp / "tok"))


def plain_template_with_conversations(e: Env):
    tok = make_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
    e.loss([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}], tokenizer=tok)


def command_line(*args: str):
    """An `instructkit ...` command line, checked as `instructkit` checks it (its own options' ranges)."""
    from instructkit.commands.main import build_parser, check_ranges

    check_ranges(build_parser().parse_known_args(list(args))[0])


def output_dir_in_use(e: Env):
    """A second run into an output_dir while the first (here: another process holding its lock) still runs."""
    import subprocess
    import sys

    out = e.tmp / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from instructkit.training.faults import "
                               "lock_output_dir; lock_output_dir(sys.argv[1]); print('locked', flush=True); "
                               "time.sleep(60)", str(out), "--learning_rate", "1e-3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (out / ".instructkit.lock").write_text(json.dumps({  # what it says, made the same every time for the doc
            "pid": 4242, "host": "node1", "started": "2025-01-01 12:00:00",
            "command": "recipes/sft_lora.py --output_dir out"}))
        from instructkit.training.faults import lock_output_dir

        lock_output_dir(out)
    finally:
        holder.kill()
        holder.wait()


def zero_adapter_after_steps(e: Env):
    """A LoRA adapter whose lora_B are all zero although optimizer steps with a non-zero learning rate ran."""
    import torch
    from safetensors.torch import save_file

    from instructkit.training.run import check_saved_weights

    out = e.tmp / "out"
    out.mkdir()
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.ones(4, 16),
               "base_model.model.layers.0.q_proj.lora_B.weight": torch.zeros(16, 4)}, out / "adapter_model.safetensors")
    check_saved_weights(out, stepped=3, steps=4, warmup_steps=1)


def tiny_trainer(e: Env, **config):
    """TRL's SFTTrainer on a one-layer model and 6 alpaca rows, writing into <tmp>/out."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "chatml")
    args = SFTConfig(output_dir=str(e.tmp / "out"), bf16=False, use_cpu=True, report_to="none", max_length=64,
                     per_device_train_batch_size=2, activation_checkpointing=False, disable_tqdm=True, **config)
    rows = Dataset.from_list([convert_row(r, "alpaca") for r in GOOD])
    return SFTTrainer(model=tiny_model(tok), args=args, processing_class=tok, train_dataset=rows)


def disk_full_checkpoint(e: Env):
    """The disk fills while the Trainer writes checkpoint-2 (checkpoint-1 is complete): torch.save fails as it does
    on a full tmpfs (tests/test_training_faults.py fills a real one), with no word of the reason."""
    import torch

    from instructkit.training.faults import guard_checkpoint_saves

    trainer = tiny_trainer(e, max_steps=2, save_strategy="steps", save_steps=1)
    guard_checkpoint_saves(trainer)
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if "checkpoint-2" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from OSError(
                28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    torch.save = save
    try:
        trainer.train()
    finally:
        torch.save = real_save


def disk_full_final(e: Env):
    """The disk fills while the final model is written (no checkpoint: save_strategy 'no')."""
    from instructkit.training.faults import final_save

    trainer = tiny_trainer(e, save_strategy="no")
    out = Path(trainer.args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with final_save(trainer, out):
        (out / "model.safetensors").write_bytes(b"half a model")
        raise OSError(28, "No space left on device", str(out / "model.safetensors"))


def serve_args(*args: str):
    from instructkit.commands.main import build_parser

    return build_parser().parse_args(["serve", "embedded", *args])


def serve_extra_missing(e: Env, monkeypatch):
    import importlib.util

    from instructkit import serving

    real = importlib.util.find_spec
    monkeypatch.setattr(serving, "find_spec", lambda name: None if name == "fastapi" else real(name))
    serving.check_installed()


def port_in_use(e: Env):
    """The port is any free one, so the doc shows it as <port>."""
    from instructkit.serving.server import bind

    taken = bind("127.0.0.1", 0)
    taken.listen()
    port = str(taken.getsockname()[1])
    try:
        bind("127.0.0.1", int(port)).close()
    except InstructkitError as err:
        raise InstructkitError(err.message.replace(port, "<port>"), fix=err.fix) from None
    finally:
        taken.close()


def benchmark_split_missing(e: Env, listed: bool = False):
    """A local MMLU subject without its dev split (few-shot examples): gone from the README's configs block too, or
    (`listed`) still named there while its file is gone."""
    import shutil

    from instructkit.evaluation.fixture import FIXTURE_DIR
    from instructkit.evaluation.harness import prepare_tasks
    from instructkit.evaluation.protocol import Protocol

    mmlu = e.tmp / "bench" / "cais" / "mmlu"
    shutil.copytree(FIXTURE_DIR / "cais" / "mmlu", mmlu)
    (mmlu / "anatomy" / "dev.jsonl").unlink()
    readme = mmlu / "README.md"
    if not listed:
        readme.write_text(readme.read_text().replace("  - split: dev\n    path: anatomy/dev.jsonl\n", ""))
    prepare_tasks(Protocol(tasks=["mmlu_anatomy"], data_dir=str(e.tmp / "bench")), e.tmp / "tasks")


def drop_leaves_no_row(e: Env):
    """Training rows that are all benchmark questions (the fixture's), with `decontaminate: drop`."""
    from instructkit.config.resolved import RecipeConfig
    from instructkit.evaluation.fixture import FIXTURE_DIR
    from instructkit.training.sft import load_sft_data

    questions = [json.loads(line)["question"] for line in
                 (FIXTURE_DIR / "cais/mmlu/anatomy/test.jsonl").read_text().splitlines()[:3]]
    data = e.jsonl("train.jsonl", [{"instruction": q, "output": "x"} for q in questions])
    load_sft_data(RecipeConfig(*e.parse("--dataset_name", data, "--eval_benchmarks", "mmlu", "--benchmark_data_dir",
                                        "fixture", "--decontaminate", "drop", "--output_dir", str(e.tmp / "out"))))


def vllm_missing(e: Env):
    from instructkit.evaluation.harness import prepare_tasks
    from instructkit.evaluation.protocol import Protocol

    prepare_tasks(Protocol(backend="vllm", data_dir="fixture"), e.tmp / "tasks")
def under_launch(env: dict, gpu: bool = False, **model_keys):
    """`distributed.check_launch` as a recipe calls it, under the environment `accelerate launch` exports."""
    from unittest import mock

    from trl import ModelConfig

    from instructkit.distributed import check_launch

    with mock.patch.dict(os.environ, env), mock.patch("torch.cuda.is_available", return_value=gpu):
        check_launch(ModelConfig(model_name_or_path="x", **model_keys))


CHAT = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(4)]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def tool_row(arguments, name: str = "get_weather") -> dict:
    """A tool-calling conversation in TRL's form: tools, an assistant call, the tool's result, the answer."""
    return {"tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": name, "arguments": arguments}}]},
        {"role": "tool", "content": "21 C"}, {"role": "assistant", "content": "21 C."}]}


def misspelled_per_model_config(e: Env):
    shipped = (ROOT / "recipes" / "configs" / "qwen2.5-7b" / "sft_qlora.yaml").read_text()
    assert "\nlora_alpha: 16" in shipped
    e.parse("--config", e.write("sft_qlora.yaml", shipped.replace("\nlora_alpha: 16", "\nlora_alpah: 16")))
SAFE_BASE = {"config.json": {"model_type": "llama"}, "model.safetensors": b""}
PAIR = {"prompt": "q", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}


@dataclass
class Case:
    id: str
    area: str
    bad: str                                # the bad input, in words, with an example
    trigger: Callable[[Env], object] | None
    expect: str                             # a part of the message that must be there
    covered_by: str | None = None           # another test triggers it (too slow to repeat here)


CASES = [
    # --- config: YAML and command line -------------------------------------------------------------------------
    Case("config-unknown-key", "config", "a misspelled key in the YAML config (`max_lenght: 64`)",
         lambda e: e.yaml("max_lenght: 64\n"), "unknown key 'max_lenght' in <tmp>/config.yaml — did you mean 'max_length'?"),
    Case("cli-unknown-flag", "config", "a misspelled flag (`--learning_rat 0.1`), which argparse would take as an "
         "abbreviation", lambda e: e.parse("--learning_rat", "0.1"),
         "unknown flag '--learning_rat' on the command line — did you mean '--learning_rate'?"),
    Case("removed-trl-key", "config", "a key TRL removed (`--max_completion_length 64`); renamed keys such as "
         "`max_seq_length` or `torch_dtype` are read as their new names, with a note",
         lambda e: e.parse("--max_completion_length", "64"), "removed in TRL 0.29 (DPO): 'max_length' limits prompt"),
    Case("old-and-new-key", "config", "an old key next to its new name, with another value (`torch_dtype: float16` "
         "and `dtype: bfloat16`)", lambda e: e.yaml("torch_dtype: float16\ndtype: bfloat16\n"),
         "sets both 'torch_dtype' (an old name) and 'dtype': keep 'dtype'"),
    Case("warmup-ratio-of-one", "config", "`warmup_ratio: 1.0`, which `warmup_steps` (below 1 a ratio) cannot say",
         lambda e: e.yaml("warmup_ratio: 1.0\n"), "warmup_ratio: 1.0 in <tmp>/config.yaml: removed in transformers 5"),
    Case("handbook-2023-mixture-keys", "config", "the alignment-handbook's mixture keys before 2025 (`dataset_mixer`, "
         "`dataset_splits`)", lambda e: e.yaml("dataset_mixer:\n  org/prefs: 1.0\ndataset_splits: [train_prefs, "
                                               "test_prefs]\n"),
         "its current form: {dataset_mixture: {datasets: [{id: org/prefs, split: train_prefs, weight: 1.0}"),
    Case("machine-cannot-honour", "config", "settings this machine cannot honour (here: `push_to_hub` while "
         "offline, a `report_to` integration that is not installed, more `dataset_num_proc` than cores, an `optim` "
         "whose package is missing), reported together with the overrides that make the run go",
         lambda e: e.yaml("push_to_hub: true\nreport_to: [clearml]\ndataset_num_proc: 4096\noptim: galore_adamw\n"),
         "add --push_to_hub false --report_to none --optim adamw_torch --dataset_num_proc"),
    Case("wrong-type-string", "config", "a word where a number belongs (`max_steps: three`)",
         lambda e: e.yaml("max_steps: three\n"), "'max_steps' in <tmp>/config.yaml: 'three' is not a valid int"),
    Case("wrong-type-number", "config", "a float where an int belongs (`lora_r: 4.5`)",
         lambda e: e.yaml("lora_r: 4.5\n"), "'lora_r' in <tmp>/config.yaml: 4.5 (float) is not a valid int"),
    Case("wrong-type-bool", "config", "a non-boolean for a true/false flag (`--packing maybe`)",
         lambda e: e.parse("--packing", "maybe"), "'--packing' on the command line: 'maybe' is not a valid true/false"),
    Case("empty-value", "config", "a key without a value (`max_steps:`)",
         lambda e: e.yaml("max_steps:\n"), "'max_steps' in <tmp>/config.yaml: an empty value is not a valid int"),
    Case("bad-choice", "config", "a value outside the choices (`packing_strategy: bdf`; TRL's old `ffd` is read as "
         "`bfd`, with a note)", lambda e: e.yaml("packing_strategy: bdf\n"),
         "'bdf' is not one of bfd, bfd_split, wrapped — did you mean 'bfd'?"),
    Case("bad-enum", "config", "a misspelled enum value (`lr_scheduler_type: cosin`)",
         lambda e: e.yaml("lr_scheduler_type: cosin\n"), "'cosin' is not one of linear, cosine,"),
    Case("bad-data-format", "config", "an unknown data format (`--dataset_format sharegtp`)",
         lambda e: e.parse("--dataset_format", "sharegtp"), "did you mean 'sharegpt'?"),
    Case("config-missing", "config", "a config file that does not exist (`--config nope.yaml`)",
         lambda e: e.parse("--config", "nope.yaml"), "config file nope.yaml does not exist (relative paths start at <tmp>)"),
    Case("config-yaml-syntax", "config", "a YAML syntax error (an unclosed `[`)",
         lambda e: e.yaml("learning_rate: [1e-4\nmax_steps: 3\n"), "config file <tmp>/config.yaml is not valid YAML"),
    Case("config-not-a-mapping", "config", "a YAML list instead of `key: value` lines",
         lambda e: e.yaml("- learning_rate: 1e-4\n"), "must be a YAML mapping of 'key: value' lines, not list"),
    Case("config-env-not-a-mapping", "config", "`env:` that is not a mapping (`env: [HF_HUB_OFFLINE]`)",
         lambda e: e.yaml("env: [HF_HUB_OFFLINE]\n"), "'env' in <tmp>/config.yaml must be a mapping"),
    Case("stray-argument", "config", "a value without a flag (`--max_steps 3 oops`)",
         lambda e: e.parse("--max_steps", "3", "oops"), "unexpected argument 'oops' on the command line"),
    Case("flag-without-value", "config", "a flag missing its value (`--learning_rate` last)",
         lambda e: e.parse("--learning_rate"), "'--learning_rate' on the command line needs a value"),
    Case("config-flag-without-path", "config", "`--config` without a file",
         lambda e: e.parse("--max_steps", "3", "--config"), "--config on the command line has no file path"),
    Case("per-model-config-unknown-key", "config", "a misspelled key in a copied per-model config "
         "(`lora_alpah: 16` in qwen2.5-7b/sft_qlora.yaml)", misspelled_per_model_config,
         "unknown key 'lora_alpah' in <tmp>/sft_qlora.yaml — did you mean 'lora_alpha'?"),
    Case("cp-unknown-config", "config", "a per-model config name `instructkit cp` does not ship "
         "(`--config qwen2.5-7`)", lambda e: catalog.config_file("sft_qlora", "qwen2.5-7"),
         "recipe 'sft_qlora' ships no config 'qwen2.5-7' — did you mean 'qwen2.5-7b'?"),
    Case("config-twice", "config", "`--config` given twice",
         lambda e: e.parse("--config", "a.yaml", "--config", "b.yaml"), "--config is given twice"),
    Case("out-of-range-cli", "config", "values out of range on the command line (`--per_device_train_batch_size 0 "
         "--learning_rate -1 --lora_r 0`), which torch / peft would refuse only after the data is read",
         lambda e: e.parse("--per_device_train_batch_size", "0", "--learning_rate", "-1", "--lora_r", "0"),
         "'--per_device_train_batch_size' on the command line: 0 is out of range: it must be at least 1"),
    Case("out-of-range-yaml", "config", "values out of range in the YAML config, reported with its other problems "
         "(`lora_dropout: 1.5`, `warmup_steps: -2`, `beta: 0` and a misspelled key)",
         lambda e: e.yaml("lora_dropout: 1.5\nwarmup_steps: -2\nbeta: 0\nmax_lenght: 64\n"),
         "'lora_dropout' in <tmp>/config.yaml: 1.5 is out of range: it must be at least 0 and less than 1"),
    Case("silently-ignored-value", "config", "a value the Trainer would take silently as another (`max_steps: 0` "
         "trains `num_train_epochs`, `save_total_limit: 0` keeps every checkpoint)",
         lambda e: e.yaml("max_steps: 0\nsave_total_limit: 0\n"), "it must be -1 or at least 1"),
    Case("share-or-count", "config", "a fraction above 1 where a value is a share below 1 or a whole count "
         "(`--save_steps 2.5`)", lambda e: e.parse("--save_steps", "2.5"),
         "'--save_steps' on the command line: 2.5 is not a whole number"),
    Case("cli-option-out-of-range", "config", "an `instructkit` option out of range (`instructkit serve x --port "
         "70000`)", lambda e: command_line("serve", "x", "--port", "70000"),
         "'--port' on the command line: 70000 is out of range: it must be at least 0 and at most 65535"),
    Case("config-duplicate-key", "config", "the same key twice in a YAML config (`learning_rate: 1e-3` ... "
         "`learning_rate: 5e-4`), which YAML would take silently", lambda e: e.yaml(
             "learning_rate: 1.0e-3\nmax_steps: 3\nlearning_rate: 5.0e-4\n"),
         "config file <tmp>/config.yaml sets a key twice: 'learning_rate' is set on line 1 and again on line 3"),
    Case("trainer-conflict", "config", "options the Trainer refuses together (`bf16: true` and `fp16: true`)",
         lambda e: e.yaml("bf16: true\nfp16: true\n"), "(while reading <tmp>/config.yaml)"),
    # --- conflicting options -------------------------------------------------------------------------------------
    Case("fsdp1-on-cpu", "conflicts", "an FSDP launch config with `fsdp_version: 1` on a machine without a GPU",
         lambda e: under_launch({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}),
         "FSDP version 1 cannot run on a machine without a GPU"),
    Case("fsdp-qlora-16bit-storage", "conflicts", "FSDP on GPUs with 4-bit weights stored as bf16 "
         "(`bnb_4bit_quant_storage: bfloat16`, bitsandbytes #1945)",
         lambda e: under_launch({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, gpu=True, load_in_4bit=True,
                                bnb_4bit_quant_storage="bfloat16"),
         "computes wrong outputs on GPUs"),
    Case("assistant-only-loss-on-text", "conflicts", "`assistant_only_loss: true` with plain text data",
         lambda e: e.loss([{"text": f"row {i}"} for i in range(4)], "--assistant_only_loss", "true"),
         "assistant_only_loss: true trains the assistant turns of conversations, but the training data is text data"),
    Case("assistant-only-loss-on-strings", "conflicts", "`assistant_only_loss: true` with plain-string "
         "prompt/completion rows", lambda e: e.loss([{"prompt": f"Q{i}", "completion": f" A{i}"} for i in range(4)],
                                                    "--assistant_only_loss", "true"),
         "the training data is prompt_completion data (plain-string prompt/completion rows)"),
    Case("completion-only-loss-on-text", "conflicts", "`completion_only_loss: true` with plain text data",
         lambda e: e.loss([{"text": f"row {i}"} for i in range(4)], "--completion_only_loss", "true"),
         "completion_only_loss: true needs prompt/completion rows"),
    Case("template-cannot-mask-assistant-turns", "conflicts", "conversations with a chat template that has no "
         "`{% generation %}` markers, that TRL knows no variant of, and whose generation prompt does not open the "
         "assistant turn (so rendering prefixes cannot find the turns either)", plain_template_with_conversations,
         "rendering prefixes of a conversation cannot find the turns: with add_generation_prompt it does not open "
         "the assistant turn"),
    # --- paths, models, tokenizers, chat templates ---------------------------------------------------------------
    Case("model-path-missing", "paths", "a model folder that does not exist (`./no/such/model`)",
         lambda e: check_local_path("./no/such/model", "model_name_or_path"),
         "model_name_or_path ./no/such/model does not exist (relative paths start at <tmp>)"),
    Case("tokenizer-path-missing", "paths", "a tokenizer folder that does not exist",
         lambda e: check_local_path("./no/tokenizer", "tokenizer_name_or_path"),
         "tokenizer_name_or_path ./no/tokenizer does not exist"),
    Case("model-path-is-a-file", "paths", "a file where a model folder belongs",
         lambda e: check_local_path(e.write("model.safetensors", ""), "model_name_or_path"),
         "model_name_or_path <tmp>/model.safetensors is a file, not a model folder"),
    Case("hub-model-offline", "paths", "a hub model name while offline (`HF_HUB_OFFLINE=1`)",
         lambda e: e.load_tokenizer("someorg/some-model"), "could not load the tokenizer 'someorg/some-model'"),
    Case("adapter-base-missing", "paths", "an adapter folder whose base model is gone",
         lambda e: e.load_model(e.model_dir("adapter", {"adapter_config.json": {
             "base_model_name_or_path": str(e.tmp / "deleted-base")}})),
         "base_model_name_or_path in <tmp>/adapter/adapter_config.json <tmp>/deleted-base does not exist"),
    Case("adapter-without-base", "paths", "an adapter folder that names no base model",
         lambda e: e.load_model(e.model_dir("adapter", {"adapter_config.json": {"peft_type": "LORA"}})),
         "<tmp>/adapter/adapter_config.json names no base model"),
    Case("pickled-model-weights", "safety", "a model folder with only `pytorch_model.bin` (a pickle)",
         lambda e: e.load_model(e.model_dir("model", {"config.json": {"model_type": "llama"},
                                                      "pytorch_model.bin": b"\x80"})),
         "model_name_or_path <tmp>/model holds only pickled weights (pytorch_model.bin)"),
    Case("pickled-adapter-weights", "safety", "an adapter folder with only `adapter_model.bin`",
         lambda e: e.load_model(e.model_dir("adapter", {"adapter_model.bin": b"\x80", "adapter_config.json": {
             "base_model_name_or_path": e.model_dir("base", SAFE_BASE)}})),
         "holds only pickled weights (adapter_model.bin)"),
    Case("remote-code", "safety", "a model that ships its own code (`auto_map` in config.json) while "
         "`trust_remote_code` is off (the default)",
         lambda e: e.load_model(e.model_dir("model", {**SAFE_BASE, "config.json": {
             "model_type": "mine", "auto_map": {"AutoModelForCausalLM": "modeling_mine.MyModel"}}})),
         "ships its own Python code (config.json maps AutoModelForCausalLM to it)"),
    Case("chat-template-invalid-jinja", "paths", "a `chat_template` string that is not valid Jinja (an unclosed "
         "`{% for %}`)", lambda e: e.yaml("chat_template: \"{% for m in messages %}{{ m['content'] }}\"\n"),
         "'chat_template' in <tmp>/config.yaml: the inline template (41 characters) is not valid Jinja"),
    Case("unknown-chat-template", "paths", "an unknown bundled template name (`chat_template: chatlm`)",
         lambda e: chat_templates.chat_template_text("chatlm"), "did you mean 'chatml'?"),
    Case("chat-template-file-missing", "paths", "a `.jinja` template path that does not exist",
         lambda e: chat_templates.chat_template_text(str(e.tmp / "mine.jinja")),
         "chat template file <tmp>/mine.jinja does not exist"),
    Case("tokenizer-without-template", "paths", "a tokenizer without a chat template, with instruction data",
         no_template_tokenizer, "has no chat template, and instruction data is trained through one"),
    # --- data ------------------------------------------------------------------------------------------------------
    Case("data-file-missing", "data", "a data file that does not exist",
         lambda e: read_source(str(e.tmp / "nope.jsonl")), "data file <tmp>/nope.jsonl does not exist"),
    Case("hub-data-offline", "data", "a hub dataset name while offline (`HF_DATASETS_OFFLINE=1`)",
         lambda e: read_source("someorg/some-data"),
         "dataset someorg/some-data: 'someorg/some-data' is not a local file or folder, and loading it from the "
         "Hugging Face Hub failed"),
    Case("empty-data-file", "data", "an empty data file",
         lambda e: e.sft_data(e.write("data.jsonl", "\n")), "<tmp>/data.jsonl: holds no data rows"),
    Case("malformed-json-line", "data", "a line of a .jsonl file that is not JSON",
         lambda e: e.sft_data(e.write("data.jsonl", json.dumps(GOOD[0]) + "\n{not json\n")),
         "<tmp>/data.jsonl line 2: not valid JSON"),
    Case("json-not-a-list", "data", "a .json file holding one object instead of a list of rows",
         lambda e: e.sft_data(e.write("data.json", '{"a": 1, "b": 2}')),
         "<tmp>/data.json: expected a JSON list of row objects, found dict"),
    Case("row-not-an-object", "data", "a .jsonl row that is not an object (`[1, 2]`)",
         lambda e: e.sft_data(e.write("data.jsonl", "[1, 2]\n")), "<tmp>/data.jsonl row 1: expected a JSON object"),
    Case("unsupported-file-type", "data", "a data file of another type (`data.xml`)",
         lambda e: e.sft_data(e.write("data.xml", "<rows/>\n")), "<tmp>/data.xml: unsupported data file type '.xml'"),
    Case("compressed-parquet", "data", "a compressed Parquet file (`data.parquet.gz`: Parquet compresses itself)",
         lambda e: e.sft_data(e.write("data.parquet.gz", b"\x1f\x8b")),
         "<tmp>/data.parquet.gz: unsupported data file type '.parquet.gz'"),
    Case("empty-data-folder", "data", "a data folder without data files",
         lambda e: e.sft_data(str(Path(e.write("data/README.md", "hi")).parent)),
         "data folder <tmp>/data holds no .jsonl/.json/.csv/.tsv/.parquet files"),
    Case("mixed-formats", "data", "a file mixing formats (alpaca rows and messages rows)",
         lambda e: e.sft_data(e.jsonl("data.jsonl", GOOD[:4] + CHAT)),
         "<tmp>/data.jsonl: the rows are in 2 formats: alpaca 4 rows (first: row 1), messages 4 rows (first: row 5)"),
    Case("csv-field-count", "data", "a CSV row with more fields than the header (an unquoted separator)",
         lambda e: e.sft_data(e.write("data.csv", "instruction,input,output\nReverse a,,a\nAdd 1, 2,,3\n")),
         "<tmp>/data.csv line 3: 4 fields, but the header has 3"),
    Case("csv-duplicate-column", "data", "a CSV header naming a column twice",
         lambda e: e.sft_data(e.write("data.csv", "instruction,output,output\na,b,c\n")),
         "<tmp>/data.csv: the header names column 'output' more than once"),
    Case("bad-csv-delimiter", "data", "a `csv_delimiter` longer than one character (`csv_delimiter: ';;'`)",
         lambda e: e.sft_data(e.write("data.csv", "instruction;output\na;b\n"), csv_delimiter=";;"),
         "csv_delimiter ';;' (for <tmp>/data.csv) is not one character"),
    Case("compressed-json-line", "data", "a malformed line in a compressed file (`data.jsonl.gz`)",
         lambda e: e.sft_data(e.write("data.jsonl.gz", __import__("gzip").compress(
             (json.dumps(GOOD[0]) + "\n{not json\n").encode(), mtime=0))),
         "<tmp>/data.jsonl.gz line 2: not valid JSON"),
    Case("unknown-columns", "data", "columns that match no format (`question`, `answer`)",
         lambda e: e.sft_data(e.jsonl("data.jsonl", [{"question": "q", "answer": "a"}] * 3)),
         "cannot tell the data format from its columns ['answer', 'question']"),
    Case("wrong-column-type", "data", "a column of the wrong type (`instruction: 3`)",
         lambda e: e.bad_row({"instruction": 3, "output": "x"}),
         "<tmp>/data.jsonl row 3: field 'instruction' has type int, expected a string"),
    Case("empty-output", "data", "an empty response (`output: \"  \"`)",
         lambda e: e.bad_row({"instruction": "x", "output": "  "}), "<tmp>/data.jsonl row 3: field 'output' is empty"),
    Case("missing-output", "data", "a row without its response column",
         lambda e: e.bad_row({"instruction": "x"}), "<tmp>/data.jsonl row 3: field 'output' missing"),
    Case("no-assistant-turn", "data", "a conversation without an assistant turn",
         lambda e: e.bad_row({"messages": [{"role": "user", "content": "hi"}]}, CHAT),
         "<tmp>/data.jsonl row 3: field 'messages' has no assistant turn, so nothing would be trained"),
    Case("unknown-role", "data", "a misspelled role (`assistent`)",
         lambda e: e.bad_row({"messages": [{"role": "user", "content": "a"}, {"role": "assistent", "content": "b"}]},
                             CHAT), "field 'messages[1].role' unknown role 'assistent'"),
    Case("preference-data-for-sft", "data", "preference pairs given to an SFT recipe",
         lambda e: e.sft_data(e.jsonl("pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 3)),
         "preference data, but this recipe trains on instructions"),
    Case("not-utf8", "data", "a file that is not UTF-8 (Latin-1)",
         lambda e: e.sft_data(e.write("data.jsonl", '{"instruction": "caf\xe9", "output": "x"}\n'.encode("latin-1"))),
         "<tmp>/data.jsonl: cannot be read (UnicodeDecodeError"),
    Case("corrupt-parquet", "data", "a .parquet file that is not Parquet",
         lambda e: e.sft_data(e.write("data.parquet", b"not parquet at all")), "<tmp>/data.parquet: not a valid Parquet file"),
    Case("missing-train-split", "data", "a data folder with a test file only (no training split)",
         lambda e: e.sft_data(str(Path(e.jsonl("data/test.jsonl", GOOD)).parent)),
         "dataset <tmp>/data has no split 'train' (it has: test)"),
    Case("every-row-skipped", "data", "`on_bad_rows: skip` when no row is valid",
         lambda e: e.sft_data(e.jsonl("data.jsonl", [{"instruction": "x", "output": ""}] * 3), on_bad_rows="skip"),
         "no training rows left: every row of split 'train' was skipped as invalid (output is empty: 3)"),
    Case("mixture-unknown-key", "data", "a misspelled key in a mixture entry (`wieght`)",
         lambda e: e.yaml("dataset_mixture:\n  datasets:\n    - id: data/chats\n      wieght: 2\n"),
         "unknown key 'wieght' in dataset_mixture entry 1 (data/chats) in <tmp>/config.yaml — did you mean 'weight'?"),
    Case("mixture-bad-weight", "data", "a negative mixture weight",
         lambda e: e.yaml("dataset_mixture:\n  - path: x.jsonl\n    weight: -1\n"), "-1 is not a positive number"),
    Case("mixture-split-missing", "data", "a mixture entry's split that the data set does not have (`train_sftt`)",
         lambda e: e.mixture(f"id: {e.snapshot()}\n      split: train_sftt"),
         "dataset_mixture entry 1 (<tmp>/snap): <tmp>/snap has no split 'train_sftt' (it has: train_sft, test_sft)"),
    Case("mixture-columns-missing", "data", "a mixture entry's `columns` naming a column the data does not have",
         lambda e: e.mixture(f"id: {e.snapshot()}\n      split: train_sft\n      columns: [messages, conversation]"),
         "columns names 'conversation', which split 'train_sft' does not have (it has: messages)"),
    Case("test-split-count-too-large", "data", "a `test_split_size` row count as large as the data (the "
         "handbook's `test_split_size: 1000` on a smaller mixture)",
         lambda e: e.mixture(f"id: {e.snapshot()}\n      split: train_sft", "  test_split_size: 1000\n"),
         "test_split_size 1000 holds out 1000 rows, but the mixture has 4 training rows"),
    Case("snapshot-split-missing", "data", "`dataset_name` a hub-layout folder without the default split `train`",
         lambda e: e.sft_data(e.snapshot()), "<tmp>/snap has no split 'train' (it has: train_sft, test_sft)"),
    Case("preference-prompt-mismatch", "data", "a preference row (ultrafeedback's shape) whose conversations do "
         "not start with its prompt", lambda e: load_preferences(InstructkitArguments(dataset_name=e.jsonl(
             "pairs.jsonl", [PAIR, PAIR, {**PAIR, "prompt": "another question"}]))),
         "<tmp>/pairs.jsonl row 3: field 'chosen' is a whole conversation that does not start with the row's prompt"),
    Case("mixture-strings-with-conversations", "data", "plain-string prompt/completion rows mixed with "
         "conversations (plain text mixes: it is replay)",
         lambda e: load_instructions(InstructkitArguments(dataset_mixture=[
             {"path": e.jsonl("a.jsonl", GOOD)},
             {"path": e.jsonl("t.jsonl", [{"prompt": "plain", "completion": " text"}] * 3)}])),
         "dataset_mixture: <tmp>/t.jsonl hold plain-string prompt/completion rows"),
    Case("tool-arguments-not-json", "data", "a tool call whose arguments are a string that is not JSON",
         lambda e: e.bad_row(tool_row('{"city": Paris}'), CHAT),
         "<tmp>/data.jsonl row 3: field 'messages[1].tool_calls[0].function.arguments' is not valid JSON"),
    Case("tool-unknown", "data", "a tool call naming a tool the row's `tools` do not declare",
         lambda e: e.bad_row(tool_row({"city": "Paris"}, name="get_wether"), CHAT),
         "field 'messages[1].tool_calls[0].function.name' calls 'get_wether', which the row's tools do not declare "
         "(tools: get_weather) — did you mean 'get_weather'?"),
    Case("tool-turn-without-call", "data", "a `tool` turn with no preceding call to answer",
         lambda e: e.bad_row({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "21 C"},
                                           {"role": "assistant", "content": "21 C."}]}, CHAT),
         "<tmp>/data.jsonl row 3: field 'messages[1]' is a tool turn with no preceding call to answer"),
    Case("content-part-unknown-type", "data", "a content part of an unknown type (`{\"type\": \"txt\"}`)",
         lambda e: e.bad_row({"messages": [{"role": "user", "content": [{"type": "txt", "text": "hi"}]},
                                           {"role": "assistant", "content": "hello"}]}, CHAT),
         "<tmp>/data.jsonl row 3: field 'messages[0].content[0]' has unknown part type 'txt' — did you mean 'text'?"),
    Case("content-part-not-text", "data", "a non-text content part (an image) for a text model",
         lambda e: e.bad_row({"messages": [{"role": "user", "content": [{"type": "image", "image": "cat.png"}]},
                                           {"role": "assistant", "content": "A cat."}]}, CHAT),
         "field 'messages[0].content[0]' is an 'image' part, but instructkit trains text models on text parts only"),
    Case("prompts-fill-max-length", "data", "every prompt longer than `max_length` (no trained token left)",
         prompts_fill_max_length, "no training row has a trained token left: every prompt fills max_length=16"),
    # --- output_dir, resuming, training ------------------------------------------------------------------------------
    Case("finished-run", "runs", "an output_dir holding a finished run",
         lambda e: e.prepare(e.model_dir("out", {"metrics.json": "{}", "model.safetensors": b""})),
         "output_dir <tmp>/out holds a finished run (metrics.json, model.safetensors); this run would overwrite it"),
    Case("output-dir-is-a-file", "runs", "an output_dir that is a file",
         lambda e: e.prepare(e.write("out", "")), "output_dir <tmp>/out is a file, not a folder"),
    Case("checkpoints-of-another-config", "runs", "an output_dir holding checkpoints of an unfinished run with "
         "another config", other_config_checkpoints,
         "holds checkpoints of an unfinished run with a different config (learning_rate: 0.001 -> 0.0005)"),
    Case("checkpoints-without-config", "runs", "an output_dir holding checkpoints another tool wrote (no config.yaml)",
         lambda e: e.prepare(str(Path(e.checkpoint(str(e.tmp / "out"), 3)).parent)),
         "output_dir <tmp>/out holds checkpoints but no readable config.yaml of the run that wrote them"),
    Case("resume-checkpoint-missing", "runs", "`resume_from_checkpoint` naming a folder that does not exist",
         lambda e: e.prepare(str(e.tmp / "out"), False, str(e.tmp / "out" / "checkpoint-9")),
         "resume_from_checkpoint <tmp>/out/checkpoint-9 cannot be resumed from: it does not exist"),
    Case("resume-checkpoint-incomplete", "runs", "`resume_from_checkpoint` naming a half-written checkpoint",
         lambda e: e.prepare(str(e.tmp / "out"), False, e.checkpoint(str(e.tmp / "out"), 9, complete=False)),
         "cannot be resumed from: trainer_state.json is missing (the save did not finish)"),
    Case("resume-and-overwrite", "runs", "`resume_from_checkpoint` together with `overwrite_output_dir: true`",
         lambda e: e.prepare(str(e.tmp / "out"), True, str(e.tmp / "out" / "checkpoint-3")),
         "resume_from_checkpoint and overwrite_output_dir are both set"),
    Case("output-dir-in-use", "runs", "a second run started into an output_dir while the first still runs",
         output_dir_in_use, "is in use by another run: pid 4242 on node1, started 2025-01-01 12:00:00"),
    Case("disk-full-checkpoint", "runs", "a full disk while the Trainer writes a checkpoint",
         disk_full_checkpoint, "while saving checkpoint-2: a checkpoint needs about"),
    Case("disk-full-final-save", "runs", "a full disk while the final model is saved", disk_full_final,
         "while saving the final model: it needs about"),
    Case("adapter-unchanged", "runs", "a LoRA adapter saved with its initial weights although optimizer steps with a "
         "non-zero learning rate ran", zero_adapter_after_steps,
         "holds its initial weights (every lora_B is zero) although 3 optimizer steps ran with a non-zero learning rate"),
    Case("sigterm", "runs", "SIGTERM (how a scheduler preempts a job) during training", None,
         "run the same command again to resume from it",
         covered_by="tests/test_training_resume.py::test_sigterm_saves_a_checkpoint_and_the_same_command_resumes"),
    Case("nonfinite-loss", "runs", "a loss that turns nan/inf during training (here: `learning_rate: 1e30`)",
         nonfinite_loss, "training stopped at step 2: the loss or its gradients are not finite (nan/inf)"),
    # --- benchmarks ------------------------------------------------------------------------------------------------
    Case("eval-without-a-model", "benchmarks", "`instructkit eval` without a model",
         lambda e: EvaluateArguments().model_dirs(), "no model to evaluate"),
    Case("benchmark-data-dir-missing", "benchmarks", "a benchmark data folder that does not exist",
         lambda e: __import__("instructkit.evaluation.harness").evaluation.harness.resolve_data_dir(str(e.tmp / "bench")),
         "benchmark data dir <tmp>/bench does not exist or is not a folder"),
    Case("benchmark-steps-without-benchmarks", "benchmarks", "`benchmark_steps: 50` without `eval_benchmarks`",
         lambda e: parse_sft_config(["--benchmark_steps", "50", "--output_dir", str(e.tmp / "out")]),
         "benchmark_steps: 50 needs the benchmarks of eval_benchmarks, which is not set"),
    Case("decontaminate-drop-without-benchmarks", "benchmarks", "`decontaminate: drop` without `eval_benchmarks`",
         lambda e: parse_sft_config(["--decontaminate", "drop", "--output_dir", str(e.tmp / "out")]),
         "decontaminate: drop needs the benchmarks of eval_benchmarks"),
    Case("decontaminate-drop-leaves-no-row", "benchmarks", "`decontaminate: drop` when every training row overlaps "
         "the benchmark questions", drop_leaves_no_row,
         "no training rows left: decontaminate: drop removed all 3 valid rows of split 'train'"),
    Case("vllm-not-installed", "benchmarks", "`instructkit eval --backend vllm` where vllm is not installed",
         vllm_missing, "--backend vllm runs lm-eval's vllm model type, but vllm is not installed here"),
    Case("benchmark-split-missing", "benchmarks", "a local benchmark data set without a split a task reads (MMLU "
         "`anatomy` without `dev`)", benchmark_split_missing,
         "benchmark data <tmp>/bench/cais/mmlu/anatomy has no 'dev' split, which mmlu_anatomy reads its few-shot"),
    Case("benchmark-split-file-missing", "benchmarks", "a split the benchmark's README names whose file is gone "
         "(MMLU `anatomy/dev.jsonl` deleted)", lambda e: benchmark_split_missing(e, listed=True),
         "the 'dev' split, which mmlu_anatomy reads its few-shot examples (lm-eval builds them even 0-shot), is "
         "anatomy/dev.jsonl in <tmp>/bench/cais/mmlu/README.md, but no such file exists"),
    Case("unknown-lm-eval-task", "benchmarks", "an unknown lm-eval task name (`mmlu_anatomyy`)", None,
         "is not an lm-eval task",
         covered_by="tests/test_evaluation.py::test_offline_hub_data_and_unknown_names_are_clear_errors"),
    Case("benchmark-hub-offline", "benchmarks", "benchmark data only the hub has, while offline", None,
         "not available offline", covered_by="tests/test_evaluation.py::test_offline_hub_data_and_unknown_names_are_clear_errors"),
    # --- serving: `instructkit serve` stops before the model loads --------------------------------------------------
    Case("serve-extra-missing", "serving", "`instructkit serve` without the `serve` extra (FastAPI, uvicorn)",
         lambda e: serve_extra_missing(e, e.monkeypatch), "instructkit serve needs fastapi, which is not installed"),
    Case("serve-bad-limit", "serving", "a limit below 1 (`--max_batch_size 0`)",
         lambda e: __import__("instructkit.commands.serve").commands.serve.check_limits(
             serve_args("--max_batch_size", "0", "--max_waiting", "-1")),
         "instructkit serve: --max_batch_size 0, --max_waiting -1: limits must be at least 1"),
    Case("serve-port-in-use", "serving", "a `--port` another program listens on", port_in_use,
         "cannot listen on 127.0.0.1:"),
]
AREAS = {"config": "Config file and command line", "conflicts": "Conflicting options",
         "paths": "Paths, models, tokenizers and chat templates", "safety": "Safe by default", "data": "Data",
         "runs": "Output dir, resuming, training", "benchmarks": "Benchmarks", "serving": "Serving"}


# --- the doc page ------------------------------------------------------------------------------------------------

DOC_HEAD = """# Errors: every bad input and its message

<!-- Generated from the table in tests/test_errors.py, where every case is a test:
     INSTRUCTKIT_UPDATE_DOCS=1 python -m pytest tests/test_errors.py -q -->

A mistake in the config, the data, a path or an output folder stops a run before it costs time, with one message
that names the file / row / key and ends with the fix. Each entry point (the recipes, `instructkit ...`) prints it
as an `error: ...` line on stderr and exits with status 2, without a library traceback; set `INSTRUCTKIT_DEBUG=1`
to see the traceback too. (`accelerate launch` reports the failure as exit status 1 and adds its own wrapper
traceback; `accelerate launch -q` leaves just the message.)

Each case below is a test in `tests/test_errors.py` that triggers the bad input through the function a recipe
calls and checks that the message shown here is printed, word for word. `<tmp>` stands for the folder the test
ran in (and the working directory), `<size>` for a size in bytes / KB / MB that depends on the machine. The machine
is taken to be a 2-core CPU without native bf16 (no avx512_bf16 / AMX), whatever the one running the tests has.

"""


def normalize(message: str, tmp: Path) -> str:
    return re.sub(r"\b\d+(?:\.\d+)? (?:bytes|KB|MB|GB|TB)\b", "<size>", message.replace(str(tmp), "<tmp>"))


def render_case(case: Case, message: str) -> str:
    if case.covered_by:
        body = f"Tested in `{case.covered_by}`; the message contains:\n\n```text\n... {case.expect} ...\n```"
    else:
        body = f"```text\n{message}\n```"
    return f"### `{case.id}`\n\n{case.bad[0].upper() + case.bad[1:]}.\n\n{body}\n"


def render_doc(messages: dict[str, str]) -> str:
    index = ["| id | bad input | area |", "|---|---|---|"] + [
        f"| [`{c.id}`](#{c.id}) | {c.bad} | {AREAS[c.area]} |" for c in CASES]
    sections = []
    for area, title in AREAS.items():
        sections.append(f"## {title}\n")
        sections += [render_case(c, messages.get(c.id, "")) for c in CASES if c.area == area]
    return DOC_HEAD + "\n".join(index) + "\n\n" + "\n".join(sections)


COLLECTED: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def update_docs():
    """INSTRUCTKIT_UPDATE_DOCS=1: write docs/errors.md from the messages seen (all cases must have run)."""
    yield
    if UPDATE and set(COLLECTED) == {c.id for c in CASES}:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(render_doc(COLLECTED))


# --- the tests ---------------------------------------------------------------------------------------------------

def test_the_table_has_at_least_30_distinct_cases():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert all(c.area in AREAS for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gives_its_message(case, tmp_path, monkeypatch):
    if case.covered_by:  # the message is asserted by that test: it must exist and check this text
        path, name = case.covered_by.split("::")
        source = (ROOT / path).read_text()
        test_source = source[source.index(f"def {name}("):]
        test_source = test_source[:test_source.find("\ndef ", 1)]
        assert case.expect in test_source, f"{case.covered_by} no longer checks {case.expect!r}"
        message = ""
    else:
        monkeypatch.chdir(tmp_path)
        # the messages of a 2-core CPU without native bf16 (as docs/errors.md shows them), whatever this one has
        monkeypatch.setattr("instructkit.config.machine.cpu_flags", lambda: frozenset())
        monkeypatch.setattr("instructkit.config.machine.cpu_cores", lambda: 2)
        env = Env(tmp_path)
        env.monkeypatch = monkeypatch
        with pytest.raises(InstructkitError) as info:
            case.trigger(env)
        err = info.value
        assert err.fix, "every message says how to fix it"
        message = normalize(f"error: {err}", tmp_path)
        assert case.expect in message
        assert "Traceback" not in message and " Fix: " in message
    COLLECTED[case.id] = message
    if not UPDATE:
        assert render_case(case, message) in DOC.read_text(), (
            f"docs/errors.md does not show case {case.id} with this message (regenerate it: INSTRUCTKIT_UPDATE_DOCS=1 "
            f"python -m pytest tests/test_errors.py):\n{message}")


@pytest.mark.skipif(UPDATE, reason="the doc is being rewritten")
def test_the_doc_lists_exactly_the_table():
    ids = re.findall(r"^### `([^`]+)`$", DOC.read_text(), flags=re.M)
    assert ids == [c.id for area in AREAS for c in CASES if c.area == area]


# --- real launches ------------------------------------------------------------------------------------------------

def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.slow
def test_nonfinite_loss_stops_a_launched_run_and_keeps_the_last_good_checkpoint(tmp_path, embedded):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "run"
    proc = launch("sft_full", "--learning_rate", "1e30", "--max_steps", "6", "--save_strategy", "steps",
                  "--save_steps", "1", "--logging_steps", "1", "--per_device_train_batch_size", "4",
                  "--eval_exact_match", "false", "--output_dir", str(out), quiet=True)
    assert proc.returncode != 0, proc.stderr[-3000:]  # 2, which accelerate launch reports as 1
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # the warmup makes step 1 a no-op; step 2 blows the weights up; the first non-finite loss comes after that
    stopped = re.search(r"training stopped at step (\d+): the loss or its gradients are not finite", errors[0])
    assert stopped and int(stopped[1]) >= 2, errors[0]
    last = out / f"checkpoint-{int(stopped[1]) - 1}"
    assert f"the last good checkpoint, {last}, is kept (nothing was saved after it)" in errors[0]
    assert outputs.checkpoints(out)[-1] == last and outputs.checkpoint_problem(last) is None
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()
    assert all(torch.isfinite(t).all() for t in load_file(last / "model.safetensors").values())


@pytest.mark.slow
def test_debug_switch_shows_the_traceback(tmp_path, embedded):
    """The plain form (one line, exit 2, no traceback) is launched above, in test_recipes.py and test_training_resume.py."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    debug = launch("sft_full", "--dataset_name", str(empty), "--output_dir", str(tmp_path / "o"), quiet=True,
                   env={"INSTRUCTKIT_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
    assert f"instructkit.errors.InstructkitError: {empty}: holds no data rows" in debug.stderr
    assert 'File "' + str(ROOT / "src" / "instructkit" / "data" / "sources.py") in debug.stderr  # where it was raised
