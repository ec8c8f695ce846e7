"""The range table: every key it names exists, every shipped default is in range, and out-of-range values from the
YAML and the command line are reported together with the config's other problems, before anything loads."""

import dataclasses

import pytest

from conftest import ROOT
from instructkit.commands.main import build_parser
from instructkit.config.arguments import EvaluateArguments, InstructkitArguments
from instructkit.config.parsing import parse_args
from instructkit.config.ranges import RANGES, range_problem
from instructkit.errors import InstructkitError


def recipe_fields() -> dict:
    from trl import DPOConfig, ModelConfig, SFTConfig

    return {f.name: f for cls in (InstructkitArguments, EvaluateArguments, SFTConfig, DPOConfig, ModelConfig)
            for f in dataclasses.fields(cls) if f.init}


def cli_options() -> set[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    return {a.dest for sub in subparsers.values() for a in sub._actions}


def test_every_key_of_the_table_is_a_setting_or_a_cli_option():
    known = set(recipe_fields()) | cli_options()
    assert not sorted(set(RANGES) - known)


def test_every_numeric_trainer_and_lora_setting_people_set_has_a_range():
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
                "max_steps", "max_length", "lora_r", "lora_alpha", "lora_dropout", "warmup_steps", "weight_decay",
                "beta", "save_steps", "logging_steps", "eval_steps", "benchmark_num_fewshot", "benchmark_limit",
                "num_fewshot", "limit", "port"):
        assert key in RANGES, key


def test_the_defaults_are_in_range():
    """No default of TRL, transformers, peft or instructkit is refused (a false alarm would block every run)."""
    for name, field in recipe_fields().items():
        if field.default is not dataclasses.MISSING:
            assert range_problem(name, field.default) is None, (name, field.default)


@pytest.mark.parametrize("config", sorted((ROOT / "recipes" / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_in_range(config):
    from trl import DPOConfig, ModelConfig, SFTConfig

    trainer = DPOConfig if "dpo" in config.name else SFTConfig
    parse_args((InstructkitArguments, trainer, ModelConfig), ["--config", str(config), "--output_dir", "x"])


@pytest.mark.parametrize("key, value, allowed", [
    ("per_device_train_batch_size", 0, False), ("per_device_train_batch_size", 1, True),
    ("learning_rate", 0, False), ("learning_rate", 1e-5, True), ("learning_rate", float("inf"), False),
    ("max_steps", -1, True), ("max_steps", 0, False), ("max_steps", -2, False),
    ("lora_dropout", 0.0, True), ("lora_dropout", 1.0, False), ("adam_beta2", 0.999, True), ("adam_beta2", 1, False),
    ("save_steps", 0.25, True), ("save_steps", 500, True), ("save_steps", 2.5, False), ("save_steps", 0, False),
    ("test_split_size", 0, True), ("test_split_size", 0.05, True), ("test_split_size", 30, True),
    ("test_split_size", 2.5, False), ("beta", 0, False), ("label_smoothing", 0.5, False), ("seed", 2**32, False),
    ("port", 0, True), ("port", 65536, False), ("loss_weights", [0.8, 0.2], True), ("loss_weights", [1, -1], False),
    ("benchmark_num_fewshot", None, True), ("pad_to_multiple_of", "auto", True),
])
def test_range_of(key, value, allowed):
    assert (range_problem(key, value) is None) == allowed


def test_out_of_range_values_are_reported_with_the_other_problems_before_anything_loads(tmp_path):
    from trl import ModelConfig, SFTConfig

    config = tmp_path / "c.yaml"
    config.write_text("lora_r: 0\nlearning_rate: -1.0e-4\nmax_lenght: 64\n")
    with pytest.raises(InstructkitError) as info:
        parse_args((InstructkitArguments, SFTConfig, ModelConfig),
                   ["--config", str(config), "--per_device_train_batch_size", "0", "--lora_dropout=2"])
    message = str(info.value)
    assert message.count("out of range") == 4 and "unknown key 'max_lenght'" in message
    assert f"'lora_r' in {config}: 0 is out of range: it must be at least 1 (the rank of the LoRA update)" in message
    assert "'--lora_dropout' on the command line: 2 is out of range: it must be at least 0 and less than 1" in message


def test_the_benchmark_recipe_checks_its_ranges():
    with pytest.raises(InstructkitError, match="'--limit' on the command line: 0 is out of range"):
        parse_args((EvaluateArguments,), ["--models", "m", "--limit", "0"])
