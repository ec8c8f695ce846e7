"""config.parsing.parse_args: YAML + CLI precedence, and every config mistake reported by key, source and fix."""

import os
from pathlib import Path

import pytest
import yaml

from instructkit.config.arguments import InstructkitArguments
from instructkit.config.machine import machine_defaults
from instructkit.config.parsing import _load_config
from instructkit.config.parsing import parse_args as parse_recipe_args
from instructkit.config.resolved import RecipeConfig, resolved_config
from instructkit.errors import InstructkitError, close_match

trl = pytest.importorskip("trl")
TYPES = (InstructkitArguments, trl.SFTConfig, trl.ModelConfig)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # the trainer's default output_dir lands in tmp_path


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def parse(*args, default_config=None):
    return parse_recipe_args(TYPES, list(args), default_config=default_config)


def error(*args, default_config=None) -> str:
    with pytest.raises(InstructkitError) as info:
        parse(*args, default_config=default_config)
    return str(info.value)


def test_yaml_values_are_defaults_and_cli_overrides_them(tmp_path):
    cfg = write(
        tmp_path,
        "learning_rate: 1e-4\nlora_r: 8\nmax_length: 128\ndataset_format: alpaca\n"
        "lora_target_modules: [q_proj, v_proj]\nmodel_init_kwargs: {attn_implementation: eager}\n",
    )
    ours, sft, model = parse("--config", cfg, "--learning_rate", "3e-4", "--lora_r=4", "--packing")
    assert sft.learning_rate == pytest.approx(3e-4)  # CLI beats YAML
    assert model.lora_r == 4
    assert sft.packing is True
    assert sft.max_length == 128  # from YAML
    assert ours.dataset_format == "alpaca"
    assert model.lora_target_modules == ["q_proj", "v_proj"]
    assert sft.model_init_kwargs == {"attn_implementation": "eager"}
    assert ours.on_bad_rows == "error"  # untouched default


def test_default_config_is_used_without_config_flag(tmp_path):
    default = write(tmp_path, "max_steps: 7\n", "default.yaml")
    other = write(tmp_path, "max_steps: 9\n", "other.yaml")
    assert parse(default_config=default)[1].max_steps == 7
    assert parse("--config", other, default_config=default)[1].max_steps == 9
    assert parse(f"--config={other}", default_config=default)[1].max_steps == 9


def test_unknown_yaml_key_suggests_closest(tmp_path):
    cfg = write(tmp_path, "max_lenght: 64\n")
    assert f"unknown key 'max_lenght' in {cfg} — did you mean 'max_length'?" in error("--config", cfg)


def test_unknown_cli_flag_is_not_taken_as_an_abbreviation():
    # Plain argparse would accept --learning_rat as a prefix of --learning_rate.
    message = error("--learning_rat", "0.1")
    assert "unknown flag '--learning_rat' on the command line — did you mean '--learning_rate'?" in message
    assert "'0.1'" not in message  # the flag's value is not reported as a stray argument


def test_all_unknown_keys_are_reported_together(tmp_path):
    cfg = write(tmp_path, "max_lenght: 64\nlerning_rate: 1e-4\n")
    message = error("--config", cfg, "--num_train_epoch", "2")
    assert f"'max_lenght' in {cfg}" in message
    assert f"'lerning_rate' in {cfg} — did you mean 'learning_rate'?" in message
    assert "'--num_train_epoch' on the command line — did you mean '--num_train_epochs'?" in message


def test_a_removed_trl_key_names_what_replaced_it(tmp_path):
    """Renamed keys are read as their new names (tests/test_config_renames.py); a removed one is a problem."""
    cfg = write(tmp_path, "max_completion_length: 512\n")
    fix = "removed in TRL 0.29 (DPO): 'max_length' limits prompt + completion"
    assert f"'max_completion_length' in {cfg}: {fix}" in error("--config", cfg)
    assert f"'max_completion_length' in flag --max_completion_length on the command line: {fix}" in \
        error("--max_completion_length", "512")


def test_max_prompt_length_is_a_dpo_key(tmp_path):
    from instructkit.training.sft import parse_sft_config

    with pytest.raises(InstructkitError, match="max_prompt_length: 512 is a DPO setting"):
        parse_sft_config(["--max_prompt_length", "512"], check_output=False)


def test_a_yaml_value_set_again_on_the_command_line_is_not_reported(tmp_path):
    cfg = write(tmp_path, "lr_scheduler_type: cosin\n")
    assert parse("--config", cfg, "--lr_scheduler_type", "cosine")[1].lr_scheduler_type == "cosine"


def test_settings_this_machine_cannot_honour_are_reported_with_key_problems_and_their_overrides(tmp_path):
    cfg = write(tmp_path, "attn_implementation: flash_attention_2\npush_to_hub: true\nreport_to: [wandb]\n"
                          "dataset_num_proc: 64\noptim: galore_adamw\ntf32: true\nmax_lenght: 8\n")
    with pytest.raises(InstructkitError) as info:
        parse("--config", cfg)
    err = info.value
    assert err.message.startswith("7 problems with this run's settings:\n")
    for override in ("--attn_implementation sdpa", "--push_to_hub false", "--report_to none",
                     "--dataset_num_proc", "--optim adamw_torch", "--tf32 false"):
        assert f"(override: {override}" in err.message and override in err.fix
    assert "unknown key 'max_lenght'" in err.message and err.fix.endswith("correct the other keys above.")
    assert "wandb is not installed (installed here: tensorboard, trackio" in err.message


def test_the_overrides_the_error_lists_make_the_config_parse(tmp_path):
    cfg = write(tmp_path, "attn_implementation: flash_attention_2\npush_to_hub: true\nreport_to: [wandb]\n"
                          "use_liger_kernel: true\n")
    with pytest.raises(InstructkitError) as info:
        parse("--config", cfg)
    overrides = info.value.fix.split("add ")[1].split(" to the command line")[0].split()
    _, sft, model = parse("--config", cfg, *overrides)
    assert (model.attn_implementation, sft.push_to_hub, sft.report_to, sft.use_liger_kernel) == \
        ("sdpa", False, [], False)  # transformers reads report_to "none" as no integration


def test_what_merely_runs_slower_here_is_a_warning_not_an_error(tmp_path, capsys, monkeypatch):
    from instructkit.config import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2"}))
    cfg = write(tmp_path, "bf16: true\noptim: paged_adamw_32bit\n")
    sft = parse("--config", cfg)[1]
    assert sft.bf16 is True  # kept: nothing is switched
    out = capsys.readouterr().out
    assert "warning: bf16: true on this CPU, which has no native bf16" in out and "--bf16 false" in out
    assert "warning: optim: paged_adamw_32bit pages optimizer state" in out
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    parse("--config", cfg)
    assert "bf16: true on this CPU" not in capsys.readouterr().out


def test_push_to_hub_online_without_a_token(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert "no Hugging Face token" in error("--push_to_hub", "true")
    assert parse("--push_to_hub", "true", "--hub_token", "hf_x")[1].push_to_hub is True


def test_still_valid_trl_keys_are_accepted(tmp_path):
    cfg = write(tmp_path, "gradient_checkpointing: false\ndataset_text_field: content\n")
    sft = parse("--config", cfg)[1]
    assert sft.gradient_checkpointing is False
    assert sft.dataset_text_field == "content"


def test_invalid_choice_in_yaml(tmp_path):
    cfg = write(tmp_path, "packing_strategy: bdf\n")
    message = error("--config", cfg)
    assert f"'packing_strategy' in {cfg}: 'bdf' is not one of bfd, bfd_split, wrapped — did you mean 'bfd'?" in message


def test_invalid_choice_on_cli():
    message = error("--packing_strategy", "bdf")
    assert "'--packing_strategy' on the command line: 'bdf' is not one of bfd, bfd_split, wrapped" in message
    assert "did you mean 'bfd'?" in message


def test_invalid_dataset_format(tmp_path):
    cfg = write(tmp_path, "dataset_format: sharegtp\n")
    message = error("--config", cfg)
    assert f"'dataset_format' in {cfg}: 'sharegtp' is not one of auto, alpaca," in message
    assert "did you mean 'sharegpt'?" in message


def test_enum_typed_field_is_checked_in_yaml(tmp_path):
    cfg = write(tmp_path, "lr_scheduler_type: cosin\neval_strategy: steps\n")
    message = error("--config", cfg)
    assert f"'lr_scheduler_type' in {cfg}: 'cosin' is not one of linear, cosine," in message
    assert "did you mean 'cosine'?" in message
    assert "eval_strategy" not in message


def test_bad_type_in_yaml(tmp_path):
    cfg = write(tmp_path, "max_steps: three\nlora_r: 4.5\n")
    message = error("--config", cfg)
    assert f"'max_steps' in {cfg}: 'three' is not a valid int" in message
    assert f"'lora_r' in {cfg}: 4.5 (float) is not a valid int" in message
    assert "usage:" not in message


def test_bad_type_on_cli():
    message = error("--max_length", "abc", "--packing", "maybe")
    assert "'--max_length' on the command line: 'abc' is not a valid int" in message
    assert "'--packing' on the command line: 'maybe' is not a valid true/false" in message


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    message = error("--config", missing)
    assert f"config file {missing} does not exist" in message
    assert "Fix:" in message
    assert f"config file {missing} does not exist" in error(default_config=missing)


def test_config_that_is_a_list(tmp_path):
    cfg = write(tmp_path, "- learning_rate: 1e-4\n- max_steps: 3\n")
    message = error("--config", cfg)
    assert f"config file {cfg} must be a YAML mapping" in message
    assert "not list" in message


def test_config_with_yaml_syntax_error(tmp_path):
    cfg = write(tmp_path, "learning_rate: [1e-4\nmax_steps: 3\n")
    message = error("--config", cfg)
    assert f"config file {cfg} is not valid YAML" in message
    assert "line" in message


def test_a_key_set_twice_names_the_key_and_both_lines(tmp_path):
    cfg = write(tmp_path, "learning_rate: 1.0e-3\nmax_steps: 3\nenv:\n  A: 1\n  A: 2\nlearning_rate: 5.0e-4\n")
    message = error("--config", cfg)
    assert message.startswith(f"config file {cfg} sets a key twice: 'learning_rate' is set on line 1 and again on "
                              "line 6; 'A' is set on line 4 and again on line 5 (YAML would keep the last one silently)")
    # the same key in two list items (mixture entries) is no duplicate; a YAML merge key is not one either
    ok = write(tmp_path, "base: &b {weight: 1}\n", "anchors.yaml")
    assert _load_config(ok) == {"base": {"weight": 1}}
    ok = write(tmp_path, "dataset_mixture:\n  - {path: a.jsonl, weight: 1}\n  - {path: b.jsonl, weight: 2}\n", "m.yaml")
    assert parse("--config", ok)[0].dataset_mixture[1] == {"path": "b.jsonl", "weight": 2}
    merged = write(tmp_path, "a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n", "merge.yaml")
    assert _load_config(merged)["b"] == {"k": 2}


def test_env_mapping_sets_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTKIT_TEST_VAR", "before")  # restored after the test
    cfg = write(tmp_path, "env:\n  INSTRUCTKIT_TEST_VAR: 42\nmax_steps: 3\n")
    assert parse("--config", cfg)[1].max_steps == 3
    assert os.environ["INSTRUCTKIT_TEST_VAR"] == "42"


def test_machine_defaults_parse_on_this_machine():
    defaults = machine_defaults()
    if defaults["bf16"]:
        pytest.skip("machine supports bf16; this test is about CPU-only machines")
    # use_cpu: several processes on a CPU-only machine form a gloo DDP group only with it
    assert defaults == {"bf16": False, "dtype": "float32", "model_name_or_path": "embedded", "use_cpu": True}
    ours, sft, model = parse("--output_dir", "out")  # TRL's own bf16 default would fail here
    assert sft.bf16 is False
    assert model.dtype == "float32"
    assert model.model_name_or_path == "embedded"
    assert ours.dataset_name == "embedded"


def test_yaml_overrides_machine_default_and_post_init_error_names_the_file(tmp_path):
    if machine_defaults()["bf16"]:
        pytest.skip("bf16 is valid on this machine")
    cfg = write(tmp_path, "bf16: true\nfp16: true\n")  # TrainingArguments.__post_init__ refuses both
    message = error("--config", cfg)
    assert "fp16" in message and "bf16" in message
    assert f"(while reading {cfg})" in message


def test_dashed_alias_and_equals_forms():
    ours, sft, model = parse("--max-length", "32", "--lora-r=4", "--eval_max_samples=10", "--no-eval-exact-match")
    assert sft.max_length == 32
    assert model.lora_r == 4
    assert ours.eval_max_samples == 10
    assert ours.eval_exact_match is False


def test_bare_positional_is_rejected():
    message = error("--max_steps", "3", "oops")
    assert "unexpected argument 'oops' on the command line" in message


def test_resolved_config_redacts_secrets_and_is_yaml_safe(tmp_path):
    ours, sft, model = parse("--hub_token", "hf_secret", "--lr_scheduler_type", "cosine", "--output_dir", "out")
    sft.model_init_kwargs = {"token": "hf_nested", "attn_implementation": "eager"}
    resolved = resolved_config(ours, sft, model)
    assert resolved["hub_token"] == "<redacted>"
    assert resolved["model_init_kwargs"] == {"token": "<redacted>", "attn_implementation": "eager"}
    assert resolved["lr_scheduler_type"] == "cosine"  # Enum -> its value
    assert resolved["dataset_format"] == "auto" and resolved["lora_r"] == 16  # all dataclasses, flat
    dumped = yaml.safe_dump(resolved, sort_keys=True)
    assert "hf_secret" not in dumped and "hf_nested" not in dumped

    path = RecipeConfig(ours, sft, model).write(tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(path.read_text()) == resolved


def test_close_match():
    assert close_match("max_lenght", ["max_length", "max_steps"]) == "max_length"
    assert close_match("BF16", ["bfloat16", "float32", "bf16"]) == "bf16"
    assert close_match("zzz", ["max_length"]) is None


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "recipes" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_config_parses_with_known_keys(config):
    from trl import DPOConfig, ModelConfig, SFTConfig

    trainer_config = DPOConfig if config.stem == "dpo" else SFTConfig
    ours, train, model = parse_recipe_args((InstructkitArguments, trainer_config, ModelConfig),
                                           args=["--config", str(config)])
    assert train.output_dir == f"outputs/{config.stem}"
    # SFT starts from the embedded base; DPO from the default SFT run's output
    assert model.model_name_or_path == ("outputs/sft_full" if config.stem == "dpo" else "embedded")
    assert ours.dataset_name == "embedded"
    assert train.bf16 is False  # this CPU machine


def test_every_launch_config_loads_with_accelerates_own_loader():
    from accelerate.commands.config.config_args import load_config_from_file

    for path in (Path(__file__).resolve().parent.parent / "accelerate_configs").glob("*.yaml"):
        cfg = load_config_from_file(str(path))
        assert cfg.num_processes >= 1, path


def test_dataset_num_proc_unset_takes_the_cores_capped_by_rows_and_a_set_value_is_kept(monkeypatch, capsys):
    from trl import SFTConfig

    from instructkit.config.resolved import ROWS_PER_DATA_PROCESS, resolve_data_processes

    monkeypatch.setattr("instructkit.config.resolved.cpu_cores", lambda: 8)

    def procs(rows, **set_):
        training = SFTConfig(output_dir="o", use_cpu=True, bf16=False, report_to="none", **set_)
        config = RecipeConfig(InstructkitArguments(), training, None)
        resolved = resolve_data_processes(config, rows)
        assert config.training.dataset_num_proc == set_.get("dataset_num_proc")  # a new config; this one untouched
        return resolved.training.dataset_num_proc

    assert procs(ROWS_PER_DATA_PROCESS - 1) is None  # one process: workers would cost more than they save
    assert procs(3 * ROWS_PER_DATA_PROCESS) == 3
    printed = capsys.readouterr()
    assert "data: tokenized in 3 processes (dataset_num_proc unset: 8 cores, 15,000 training rows)" in \
        printed.out + printed.err
    assert procs(1_000_000) == 8
    assert procs(1_000_000, dataset_num_proc=1) == 1
