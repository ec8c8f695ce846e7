"""config.renames: the table of renamed and removed keys, checked against the installed TRL / transformers
dataclasses, and how a config that uses them reads."""

import dataclasses

import pytest

from instructkit.config.arguments import InstructkitArguments
from instructkit.config.parsing import parse_args
from instructkit.config.renames import STALE_KEYS, STALE_VALUES
from instructkit.errors import InstructkitError

trl = pytest.importorskip("trl")
SFT = (InstructkitArguments, trl.SFTConfig, trl.ModelConfig)
FIELDS = {f.name for cls in (InstructkitArguments, trl.SFTConfig, trl.DPOConfig, trl.ModelConfig)
          for f in dataclasses.fields(cls)}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("old", sorted(STALE_KEYS))
def test_every_old_key_is_gone_and_its_replacement_exists(old):
    """The table is verified, not remembered: no installed dataclass has the old key; the new one is a field."""
    assert old not in FIELDS, f"{old} is a field again: remove it from STALE_KEYS"
    new = STALE_KEYS[old].new
    assert new is None or new in FIELDS, f"{old} -> {new}, which no installed dataclass has"


def test_renamed_values_are_gone_and_their_replacements_valid():
    from trl.data_utils import pack_dataset  # noqa: F401 (the values below are what it accepts)

    for (key, old), (new, _) in STALE_VALUES.items():
        field = next(f for f in dataclasses.fields(trl.SFTConfig) if f.name == key)
        assert old not in field.metadata["choices"] and new in field.metadata["choices"]


def test_exact_renames_are_read_with_a_note(tmp_path, capsys):
    config = tmp_path / "old.yaml"
    config.write_text("torch_dtype: bfloat16\nmax_seq_length: 512\nwarmup_ratio: 0.1\nevaluation_strategy: 'no'\n"
                      "packing_strategy: ffd\nsave_safetensors: true\n")
    ours, sft, model = parse_args(SFT, ["--config", str(config)])
    assert (model.dtype, sft.max_length, sft.warmup_steps, sft.eval_strategy, sft.packing_strategy) == \
        ("bfloat16", 512, 0.1, "no", "bfd")
    out = capsys.readouterr().out
    assert f"torch_dtype: 'bfloat16' in {config} read as dtype: 'bfloat16' (TRL renamed it" in out
    assert "warmup_ratio: 0.1 in" in out and "removed in transformers 5: warmup_steps below 1 is a ratio" in out
    assert "packing_strategy: ffd read as packing_strategy: bfd" in out
    assert "save_safetensors: True in" in out and "is left out, which means the same" in out


def test_old_flags_on_the_command_line_are_read_the_same_way(capsys):
    _, sft, model = parse_args(SFT, ["--torch_dtype", "float32", "--warmup_ratio=0.2", "--max_seq_length", "64",
                                     "--packing_strategy", "ffd"])
    assert (model.dtype, sft.warmup_steps, sft.max_length, sft.packing_strategy) == ("float32", 0.2, 64, "bfd")
    assert "flag --warmup_ratio on the command line read as warmup_steps: 0.2" in capsys.readouterr().out


def test_torch_dtype_null_means_the_models_own_dtype(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("torch_dtype: null\n")
    assert parse_args(SFT, ["--config", str(config)])[2].dtype == "auto"


@pytest.mark.parametrize("yaml_text, message", [
    ("warmup_ratio: 1.0\n", "warmup_ratio: 1.0 in"),  # 1.0 as warmup_steps would be one step, not all of them
    ("max_completion_length: 64\n", "'max_completion_length' in"),
    ("torch_dtype: float16\ndtype: bfloat16\n", "sets both 'torch_dtype' (an old name) and 'dtype': keep 'dtype'"),
    ("num_processes: 4\n", "pass --num_processes N to accelerate launch"),
    ("dataset_mixer: {org/data: 1.0}\ndataset_splits: [train_sft, test_sft]\n",
     "'dataset_mixer' and 'dataset_splits' in"),
])
def test_keys_without_an_equivalent_are_problems_that_say_what_replaced_them(tmp_path, yaml_text, message):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    with pytest.raises(InstructkitError) as info:
        parse_args(SFT, ["--config", str(config)])
    assert message in str(info.value) and "did you mean" not in str(info.value)


def test_the_2023_mixture_keys_are_answered_with_the_current_forms(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("dataset_mixer:\n  HuggingFaceH4/ultrafeedback_binarized: 1.0\n"
                      "dataset_splits:\n- train_prefs\n- test_prefs\n")
    with pytest.raises(InstructkitError) as info:
        parse_args(SFT, ["--config", str(config)])
    message = str(info.value)
    assert ("its current form: {dataset_mixture: {datasets: [{id: HuggingFaceH4/ultrafeedback_binarized, split: "
            "train_prefs, weight: 1.0}, {id: HuggingFaceH4/ultrafeedback_binarized, split: test_prefs, weight: "
            "1.0}], test_split_size: 0.05, seed: 0}}") in message
    assert ("dataset_name: HuggingFaceH4/ultrafeedback_binarized, dataset_train_split: train_prefs, "
            "dataset_test_split: test_prefs") in message


@pytest.mark.parametrize("typo, suggestion", [("max_lenght", "max_length"), ("lora_alhpa", "lora_alpha")])
def test_typos_still_get_a_suggestion(tmp_path, typo, suggestion):
    config = tmp_path / "c.yaml"
    config.write_text(f"{typo}: 1\n")
    with pytest.raises(InstructkitError, match=f"did you mean '{suggestion}'"):
        parse_args(SFT, ["--config", str(config)])


def test_a_key_that_only_looks_like_another_gets_no_guess(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("torch_compiler: true\n")  # not torch_compile's typo? close: suggested; a different word: not
    with pytest.raises(InstructkitError) as info:
        parse_args(SFT, ["--config", str(config)])
    assert "did you mean 'torch_compile'" in str(info.value)
    config.write_text("model_dtype: bfloat16\n")
    with pytest.raises(InstructkitError) as info:
        parse_args(SFT, ["--config", str(config)])
    assert "did you mean" not in str(info.value)
