"""Offline by construction; the embedded default in its seconds-long `test` preset, built once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  TOKENIZERS_PARALLELISM="false", INSTRUCTKIT_EMBEDDED="test")
os.environ.setdefault("INSTRUCTKIT_CACHE", str(ROOT / ".cache" / "test-embedded"))
# DeepSpeed's ops, built once per machine (not per checkout: a clean CI checkout would build them again)
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "instructkit" / "torch_extensions"))
# `make test` runs two tests at a time (pytest-xdist, one per core): one torch thread per process then, so two
# launches side by side do not fight over the cores, and every multi-process launch on a port of its own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("INSTRUCTKIT_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def embedded():
    """The built test preset (model dir + data dir)."""
    from instructkit.embedded import ensure_embedded

    return ensure_embedded()


@pytest.fixture(scope="session")
def hub_data(tmp_path_factory):
    """Hub-layout snapshots of ultrachat_200k, ultrafeedback_binarized, cai-conversation-harmless, smoltalk2 and imdb
    (tests/hub_data.py), written once per session: name -> folder."""
    import hub_data as writer

    return writer.write_all(tmp_path_factory.mktemp("hub"))


def launch_command(recipe: str, *args: str, quiet: bool = False, config: str = "single_gpu",
                   launcher_args: tuple = ()) -> list[str]:
    """`accelerate launch [-q] --config_file accelerate_configs/<config>.yaml recipes/<recipe>.py ARGS`."""
    accelerate = Path(sys.executable).with_name("accelerate")
    script = recipe if recipe.endswith(".py") else str(ROOT / "recipes" / f"{recipe}.py")
    if several_processes(config) and "--main_process_port" not in launcher_args:
        launcher_args = ("--main_process_port", str(free_port()), *launcher_args)
    return [str(accelerate), "launch", *(["-q"] if quiet else []),
            "--config_file", str(ROOT / "accelerate_configs" / f"{config}.yaml"), *launcher_args, script, *args]


def several_processes(config: str) -> bool:
    """Whether accelerate_configs/<config>.yaml launches more than one process."""
    import yaml

    return yaml.safe_load((ROOT / "accelerate_configs" / f"{config}.yaml").read_text())["num_processes"] > 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(recipe: str, *args: str, cwd: Path = ROOT, timeout: int = 600, env: dict | None = None,
           quiet: bool = False, config: str = "single_gpu", launcher_args: tuple = ()):
    """`launch_command(...)` run as a user runs it, in a subprocess."""
    cmd = launch_command(recipe, *args, quiet=quiet, config=config, launcher_args=launcher_args)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


WORDS = ("You are terse. Reverse cat. tac Add 1 and 2. 3 Now add 4 and 5. 9 Upper case dog. DOG Thanks! "
         "Name a colour. Blue is a colour. hello world the answer is")


def make_tokenizer(bos_on_encode: bool = True):
    """A tiny byte-level BPE tokenizer, built in milliseconds: <s> bos, </s> eos, <pad> pad, no chat template.

    `bos_on_encode`: like Llama/Mistral/Gemma tokenizers, plain `tokenizer(text)` prepends <s>.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([WORDS] * 4, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "</s>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos_on_encode:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                          special_tokens=[("<s>", tk.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_model(tokenizer, tied: bool = False):
    """A randomly initialised one-layer Llama for `tokenizer` (enough for SFTTrainer to prepare data)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                        tie_word_embeddings=tied))


def sft_trainer(tok, rows, fmt, model=None, peft_config=None, script: dict | None = None, **config):
    """TRL's SFTTrainer on rows in TRL's forms, with the loss instructkit configures: TRL tokenizes and masks (or
    instructkit does, as a recipe does: `training.sft.trainer_splits`). `script`: instructkit's keys.

    Returns (trainer, DataReport) ready for `preflight.check`.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from datasets import DatasetDict

    from instructkit.config.arguments import InstructkitArguments
    from instructkit.config.resolved import RecipeConfig
    from instructkit.data.formats import form_of, is_conversational
    from instructkit.data.loading import TrainingData
    from instructkit.data.report import DataReport
    from instructkit.data.storage import as_arrow
    from instructkit.training.sft import padding_free_collator, resolve_sft, trainer_splits

    report = DataReport(format=fmt, form="+".join(sorted({form_of(r) for r in rows})))
    report.conversational = any(is_conversational(r) for r in rows)
    args = SFTConfig(output_dir="/tmp/ik-templates", bf16=False, use_cpu=True, report_to="none", save_strategy="no",
                     activation_checkpointing=False, **{"max_length": 512, **config})
    resolved = resolve_sft(RecipeConfig(InstructkitArguments(**(script or {})), args, None), report, tok)
    data = TrainingData(DatasetDict({"train": as_arrow(rows)}), report)
    train = trainer_splits(resolved, data, tok, held_out=0)["train"]
    trainer = SFTTrainer(model=model or tiny_model(tok), args=resolved.training, processing_class=tok,
                         peft_config=peft_config, train_dataset=train, data_collator=padding_free_collator(resolved, tok))
    trainer.instructkit_tokenized = train if train is not data.train else None  # the rows instructkit masked itself
    return trainer, report


@pytest.fixture(scope="session")
def family():
    """`family(name)`: a real tokenizer family built once into the test cache (tests/families.py), with its tiny model."""
    from families import ensure_family

    return ensure_family
