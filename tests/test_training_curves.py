"""Training curves from a run's metrics.json: a real PNG with the panels that have data; one line without matplotlib."""

import json
import sys

HISTORY = [{"loss": 2.0 - 0.1 * s, "grad_norm": 1.0 / s, "learning_rate": 1e-3 * (1 - s / 10), "mean_token_accuracy":
            0.1 * s, "entropy": 1.0, "epoch": s / 10, "step": s} for s in range(1, 10)]
HISTORY += [{"eval_loss": 1.5, "eval_mean_token_accuracy": 0.6, "eval_rewards/margins": 0.4, "eval_runtime": 0.3,
             "eval_samples_per_second": 99.0, "eval_num_tokens": 750.0, "eval_logps/chosen": -30.0, "eval_bleu": 12.0,
             "epoch": 0.5, "step": 5},
            {"train_runtime": 1.0, "train_loss": 1.6, "total_flos": 1e9, "epoch": 0.9, "step": 9}]


def write_run(path, history=HISTORY):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"recipe": "sft_lora", "log_history": history}))
    return path


def test_panels_group_the_logged_curves():
    from instructkit.training.curves import panels

    found = dict(panels(HISTORY))
    assert list(found) == ["loss", "learning rate", "gradient norm", "accuracy", "rewards (DPO)", "eval metrics"]
    assert set(found["loss"]) == {"loss", "eval_loss"} and len(found["loss"]["loss"]) == 9
    assert found["loss"]["eval_loss"] == [(5, 1.5)]
    assert set(found["accuracy"]) == {"mean_token_accuracy", "eval_mean_token_accuracy"}
    assert set(found["rewards (DPO)"]) == {"eval_rewards/margins"}
    assert set(found["eval metrics"]) == {"eval_bleu"}  # not runtime, throughput, token counts, log-probs, entropy


def test_png_is_a_valid_image(tmp_path):
    from PIL import Image

    from instructkit.training.curves import plot_training_curves

    path = plot_training_curves(write_run(tmp_path / "run"))
    assert path == tmp_path / "run" / "training_curves.png" and path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 600
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # curves, text and axes: not a blank canvas


def test_without_matplotlib_one_line_and_no_file(tmp_path, monkeypatch, capsys):
    from instructkit.training.curves import plot_training_curves

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert plot_training_curves(write_run(tmp_path / "run")) is None
    assert not (tmp_path / "run" / "training_curves.png").exists()
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines == ["[instructkit] training curves not plotted: matplotlib is not installed "
                     "(pip install 'instructkit[plots]')"]


def test_benchmark_scores_get_their_panel():
    from instructkit.training.curves import panels

    history = HISTORY + [{"benchmarks/local_mmlu/acc": 0.25 + 0.01 * s, "benchmarks/truthfulqa_mc2/acc": 0.4,
                          "benchmarks_runtime": 12.0, "epoch": s / 10, "step": s} for s in (0, 4, 9)]
    found = dict(panels(history))
    assert list(found)[-1] == "benchmarks (lm-eval)"
    assert set(found["benchmarks (lm-eval)"]) == {"benchmarks/local_mmlu/acc", "benchmarks/truthfulqa_mc2/acc"}
    assert [s for s, _ in found["benchmarks (lm-eval)"]["benchmarks/local_mmlu/acc"]] == [0, 4, 9]
