"""Sample generations during training: when they run, where they go, and that they leave training unchanged."""

import json
from types import SimpleNamespace

from conftest import make_tokenizer, sft_trainer, tiny_model

ROWS = [{"prompt": p, "completion": c} for p, c in
        [("Reverse cat.", " tac"), ("Add 1 and 2.", " 3"), ("Upper case dog.", " DOG"), ("Now add 4 and 5.", " 9")] * 4]
SAMPLES = [{"prompt": "Reverse cat.", "target": "tac"}, {"prompt": "Add 1 and 2. Now add 4 and 5.", "target": "9"}]


def train(tmp_path, every=None, steps=3, report_to="none"):
    """A seconds-long SFT run of a one-layer model; with `every`, SampleGenerations attached."""
    from transformers import set_seed

    from instructkit.training.callbacks import SampleGenerations

    set_seed(0)
    tok = make_tokenizer()
    trainer, _ = sft_trainer(tok, ROWS, "prompt_completion", model=tiny_model(tok), max_steps=steps,
                             per_device_train_batch_size=4, logging_steps=1, learning_rate=1e-2, seed=0)
    trainer.args.output_dir = str(tmp_path)
    callback = None
    if every is not None:
        callback = SampleGenerations(trainer, tok, SAMPLES, every=every, max_new_tokens=4)
        trainer.add_callback(callback)
    trainer.train()
    return trainer, callback


def test_samples_every_n_steps_and_at_the_end_leave_training_unchanged(tmp_path, capsys):
    plain, _ = train(tmp_path / "plain")
    sampled, _ = train(tmp_path / "sampled", every=2)
    losses = lambda t: [e["loss"] for e in t.state.log_history if "loss" in e]  # noqa: E731
    assert losses(sampled) == losses(plain) and len(losses(plain)) == 3  # exactly the same run

    rows = [json.loads(line) for line in (tmp_path / "sampled" / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 2, 3, 3]  # step 2 (every 2) and the end (step 3)
    assert [r["prompt"] for r in rows[:2]] == [s["prompt"] for s in SAMPLES]
    assert all(isinstance(r["text"], str) and r["target"] in ("tac", "9") for r in rows)
    out = capsys.readouterr().out
    assert "[instructkit] samples at step 2:\n  'Reverse cat.' -> " in out and "samples at step 3:" in out
    assert not (tmp_path / "plain" / "samples.jsonl").exists()


def test_samples_reach_the_report_to_integrations(tmp_path, monkeypatch):
    """The samples go to every `report_to` integration as one markdown text entry, not through trainer.log (which
    would add a string to log_history and take TRL's averaged metrics early)."""
    from transformers import TrainerCallback
    from transformers.integrations import integration_utils

    received = []

    class Recorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            received.append((state.global_step, dict(logs)))

    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "recorder", Recorder)
    from transformers import set_seed

    from instructkit.training.callbacks import SampleGenerations

    set_seed(0)
    tok = make_tokenizer()
    trainer, _ = sft_trainer(tok, ROWS, "prompt_completion", model=tiny_model(tok), max_steps=2,
                             per_device_train_batch_size=4, logging_steps=1)
    trainer.args.output_dir, trainer.args.report_to = str(tmp_path), ["recorder"]
    trainer.add_callback(Recorder())
    trainer.add_callback(SampleGenerations(trainer, tok, SAMPLES, every=1, max_new_tokens=3))
    trainer.train()
    texts = [(step, logs["samples"]) for step, logs in received if "samples" in logs]
    assert [step for step, _ in texts] == [1, 2]
    assert texts[0][1].startswith("| prompt | answer | target |\n|---|---|---|\n| Reverse cat. | ")
    assert all(isinstance(v, (int, float)) for e in trainer.state.log_history for v in e.values())


def test_default_prompts_are_held_out_rows_and_zero_steps_turns_it_off(embedded):
    from transformers import AutoTokenizer

    from instructkit.config.arguments import InstructkitArguments
    from instructkit.data.loading import load_instructions
    from instructkit.training.callbacks import add_sample_generations, sample_rows

    args = InstructkitArguments(sample_generations_num=3)
    dataset, _ = load_instructions(args, seed=0)
    tok = AutoTokenizer.from_pretrained(embedded.model_dir)
    rows = sample_rows(args, dataset["test"], tok)
    test_prompts = {r["prompt"][-1]["content"] for r in dataset["test"]}
    assert len(rows) == 3 and all(r["prompt"][-1]["content"] in test_prompts and r["target"] for r in rows)
    assert sample_rows(args, dataset["test"], tok) == rows  # the same rows every time

    mine = sample_rows(InstructkitArguments(sample_generations_prompts=["Reverse cat."]), dataset["test"], tok)
    assert mine == [{"prompt": [{"role": "user", "content": "Reverse cat."}]}]
    off = SimpleNamespace(sample_generations_steps=0)
    assert add_sample_generations(None, off, dataset["test"], tok) is None
