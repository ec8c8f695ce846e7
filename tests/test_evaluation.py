"""Benchmarks through lm-eval (offline, on the bundled fixture), generation metrics, decontamination, the hook."""

import json
import math
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import launch
from instructkit.errors import InstructkitError
from instructkit.evaluation.harness import evaluate
from instructkit.evaluation.protocol import Protocol
from instructkit.evaluation.reports import compare_table, scores

FAST = dict(data_dir="fixture", limit=3)


# -- the bundled fixture -----------------------------------------------------------------------------------------
def test_fixture_has_the_real_schemas_and_is_reproducible(tmp_path):
    from instructkit.evaluation.fixture import FIXTURE_DIR, write_fixture

    write_fixture(tmp_path)
    shipped = sorted(p.relative_to(FIXTURE_DIR) for p in FIXTURE_DIR.rglob("*") if p.is_file())
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all((FIXTURE_DIR / f).read_bytes() == (tmp_path / f).read_bytes() for f in shipped)
    for subject in (FIXTURE_DIR / "cais/mmlu").iterdir():
        if subject.is_dir():
            assert sorted(p.stem for p in subject.iterdir()) == ["dev", "test", "validation"]
            for line in (subject / "test.jsonl").read_text().splitlines():
                row = json.loads(line)
                assert set(row) == {"question", "subject", "choices", "answer"} and row["subject"] == subject.name
                assert len(set(row["choices"])) == 4 and row["answer"] in range(4)
    tqa = FIXTURE_DIR / "truthfulqa/truthful_qa"
    for line in (tqa / "multiple_choice/validation.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["mc1_targets"]["labels"][0] == 1 and sum(row["mc1_targets"]["labels"]) == 1
        labels = row["mc2_targets"]["labels"]
        assert labels == sorted(labels, reverse=True) and 0 < sum(labels) < len(labels)  # true answers first
    gen = json.loads((tqa / "generation/validation.jsonl").read_text().splitlines()[0])
    assert set(gen) == {"type", "category", "question", "best_answer", "correct_answers", "incorrect_answers", "source"}


# -- generation metrics ----------------------------------------------------------------------------------------
def test_text_scores_on_known_pairs():
    from instructkit.evaluation.text_metrics import text_scores

    same = text_scores(["tac", "the cat sat on the mat"], ["tac", "the cat sat on the mat"])
    assert same["exact_match"] == 1.0 and same["rouge_l"] == 1.0 and same["bleu"] == pytest.approx(100.0)
    mixed = text_scores(["tac", "the cat sat", " 12 "], ["tac", "the cat sat on the mat", "12"])
    assert mixed["exact_match"] == pytest.approx(2 / 3)  # surrounding whitespace ignored, partial answers are not
    assert mixed["rouge_l"] == pytest.approx((1 + 2 * 0.5 * 1 / 1.5 + 1) / 3)  # LCS 3 of 6 words: P 1, R .5
    assert mixed["bleu"] == 0.0  # corpus BLEU: no 4-gram in these short answers matches
    import sacrebleu

    close = text_scores(["the cat sat on the mat today"], ["the cat sat on the red mat today"])
    assert 0 < close["bleu"] < 100
    assert close["bleu"] == sacrebleu.corpus_bleu(["the cat sat on the mat today"],
                                                  [["the cat sat on the red mat today"]]).score
    assert text_scores(["dog"], ["tac"]) == {"exact_match": 0.0, "rouge_l": 0.0, "bleu": 0.0, "n": 1}
    with pytest.raises(InstructkitError, match="as many predictions as references"):
        text_scores(["a"], [])


def test_response_perplexity_counts_response_tokens_only(embedded):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructkit.evaluation.text_metrics import (
        response_perplexity,
        response_token_masks,
    )

    tok = AutoTokenizer.from_pretrained(embedded.model_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded.model_dir)
    rows = [{"prompt": [{"role": "user", "content": "Reverse cat."}], "target": "tac"},
            {"prompt": [{"role": "user", "content": "Add 2 and 3."}], "target": "5"}]
    got = response_perplexity(model, tok, rows, batch_size=2)
    nll = tokens = 0  # reference: the model's own loss, one row at a time, prompt masked
    for row in rows:
        ids, n_prompt = response_token_masks(tok, row["prompt"], row["target"])
        labels = torch.tensor([[-100] * n_prompt + ids[n_prompt:]])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels).loss
        nll, tokens = nll + float(loss) * (len(ids) - n_prompt), tokens + len(ids) - n_prompt
    assert got["tokens"] == tokens and got["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    assert model.training is False


# -- decontamination ---------------------------------------------------------------------------------------------
def test_decontamination_report_flags_file_and_row(tmp_path):
    from instructkit.evaluation.decontamination import read_rows, report, summary_lines

    questions = {"task_a": ["Which organ pumps blood through the body of a grown up human being?",
                            "Reverse lamp please.", "Reverse cat."],  # the last: too short to check
                 "task_b": ["A question nobody trained on at all, not even in part, ever."]}
    train = tmp_path / "train.jsonl"
    rows = [{"instruction": "Name a colour.", "output": "Blue"},  # clean
            {"messages": [{"role": "user", "content": "Quiz: which organ pumps BLOOD through the body of a "
                                                      "grown-up human? Answer briefly."},
                          {"role": "assistant", "content": "The heart"}]},  # 8-gram overlap, case/punct. ignored
            {"instruction": "reverse lamp, please", "output": "pmal"},  # a short question matches whole
            {"instruction": "Reverse lampshade please. Reverse cat.", "output": "x"}]  # a different word; too short
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = report({str(train): read_rows(train)}, questions, n=8)
    a = result["tasks"]["task_a"]
    assert a["overlapping_questions"] == 2
    assert [(r["file"], r["row"], r["docs"]) for r in a["rows"]] == [(str(train), 2, [0]), (str(train), 3, [1])]
    assert result["tasks"]["task_b"] == {"questions": 1, "overlapping_questions": 0, "rows": []}
    lines = summary_lines(result)
    assert "task_a: 2 of 3 questions overlap 2 training rows" in lines[1] and f"{train} row 2" in lines[2]


def test_decontaminate_command_on_fixture_benchmarks(tmp_path, capsys):
    from instructkit.commands.main import main
    from instructkit.evaluation.fixture import FIXTURE_DIR

    mmlu_q = json.loads((FIXTURE_DIR / "cais/mmlu/anatomy/test.jsonl").read_text().splitlines()[1])["question"]
    tqa_q = json.loads((FIXTURE_DIR / "truthfulqa/truthful_qa/multiple_choice/validation.jsonl")
                       .read_text().splitlines()[0])["question"]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"instruction": q, "output": "x"}) + "\n"
                                              for q in ["Name a colour.", mmlu_q, "Say hi.", tqa_q]))
    main(["decontaminate", "--train", str(data), "--tasks", "mmlu", "truthfulqa_mc2", "--data_dir", "fixture",
              "--output_dir", str(tmp_path / "out"), "--json"])
    result = json.loads(capsys.readouterr().out)
    flagged = {t: [(Path(r["file"]).name, r["row"], r["docs"]) for r in e["rows"]] for t, e in result["tasks"].items()}
    assert flagged["mmlu_anatomy"] == [("train.jsonl", 2, [1])]
    assert flagged["truthfulqa_mc2"] == [("train.jsonl", 4, [0])]
    assert flagged["mmlu_astronomy"] == [] and result["training_rows"] == 4


# -- errors before any model loads -------------------------------------------------------------------------------
def test_missing_data_dir_is_one_line_before_the_model_loads(tmp_path):
    with pytest.raises(InstructkitError, match="benchmark data dir .*missing.* does not exist"):
        evaluate(Protocol(data_dir=str(tmp_path / "missing")), tmp_path, model_dir=str(tmp_path / "no-model"))
    done = subprocess.run([str(Path(sys.executable).with_name("instructkit")), "eval", "--models", "nowhere",
                           "--data_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: benchmark data dir {tmp_path / 'missing'} does not exist or is not a folder. Fix: point it at local "
        "copies laid out like the hub (<dir>/cais/mmlu, <dir>/truthfulqa/truthful_qa), or use 'fixture' for the "
        "bundled test data."]


def test_offline_hub_data_and_unknown_names_are_clear_errors(tmp_path):
    from instructkit.evaluation.harness import prepare_tasks

    with pytest.raises(InstructkitError, match=r"not available offline: Couldn't reach 'truthfulqa/truthful_qa'.*"
                                               r"Fix: set benchmark_data_dir"):
        prepare_tasks(Protocol(tasks=["truthfulqa_mc2"]), tmp_path)
    with pytest.raises(InstructkitError, match="'mmlu_anatomyy' is not an lm-eval task.*did you mean 'mmlu_anatomy'"):
        prepare_tasks(Protocol(tasks=["mmlu_anatomyy"], data_dir="fixture"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InstructkitError, match="no local data for benchmark 'mmlu' in .*empty.*cais/mmlu"):
        prepare_tasks(Protocol(tasks=["mmlu"], data_dir=str(tmp_path / "empty")), tmp_path)


# -- evaluating models -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter_dir(embedded, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on the embedded base: it must change the scores."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(embedded.model_dir)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(embedded.model_dir).save_pretrained(out)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(embedded.model_dir)
    return out


def test_eval_recipe_model_dir_and_adapter_with_deltas(embedded, adapter_dir, tmp_path, capsys):
    from instructkit.commands.main import main

    # --model_name_or_path (every recipe's key) is the first model, --models the rest
    main(["eval", "--model_name_or_path", str(embedded.model_dir), "--models", str(adapter_dir), "--tasks", "mmlu",
          "truthfulqa_mc2",
              "--data_dir", "fixture", "--limit", "3", "--output_dir", str(tmp_path)])
    printed = capsys.readouterr().out
    base = json.loads((tmp_path / "0-base" / "benchmarks.json").read_text())
    tuned = json.loads((tmp_path / f"1-{adapter_dir.name}" / "benchmarks.json").read_text())
    p = tuned["protocol"]
    assert p["adapter"] == str(adapter_dir) and p["model"] == str(embedded.model_dir)  # the adapter on its base
    assert base["protocol"]["adapter"] is None
    assert p["tasks"] == ["mmlu", "truthfulqa_mc2"] and p["limit"] == 3 and p["apply_chat_template"] is False
    assert p["n_shot"]["mmlu_anatomy"] == 5 and p["n_shot"]["truthfulqa_mc2"] == 0
    assert set(p["versions"]) == {"lm_eval", "transformers", "peft", "torch"} and "--include_path" in p["cli"]
    assert base["n-samples"]["mmlu_anatomy"]["effective"] == 3
    b, t = scores(base), scores(tuned)
    assert set(b) == set(t) and ("local_mmlu", "acc") in b and ("truthfulqa_mc2", "acc") in b
    assert b[("truthfulqa_mc2", "acc")] != t[("truthfulqa_mc2", "acc")]  # the adapter is really applied
    delta = t[("truthfulqa_mc2", "acc")] - b[("truthfulqa_mc2", "acc")]
    assert f"{delta:+.4f}" in printed and "deltas against" in printed
    assert (tmp_path / "compare.md").read_text().startswith("| task | metric | 0:base |")


def test_chat_template_on_and_off_and_in_memory_equals_dir(embedded, tmp_path):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    off = evaluate(Protocol(tasks=["truthfulqa_mc2"], **FAST), tmp_path / "off", model_dir=str(embedded.model_dir))
    on = evaluate(Protocol(tasks=["truthfulqa_mc2"], apply_chat_template=True, **FAST), tmp_path / "on",
                  model_dir=str(embedded.model_dir))
    assert on["protocol"]["apply_chat_template"] is True and on["protocol"]["chat_template_sha"]
    assert off["protocol"]["chat_template_sha"] is None and "--apply_chat_template" in on["protocol"]["cli"]
    assert scores(on)[("truthfulqa_mc2", "acc")] != scores(off)[("truthfulqa_mc2", "acc")]

    # the same work on the model object (the end-of-training path): identical numbers, RNG and mode restored
    model = AutoModelForCausalLM.from_pretrained(embedded.model_dir).train()
    tok = AutoTokenizer.from_pretrained(embedded.model_dir)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    mem = evaluate(Protocol(tasks=["truthfulqa_mc2"], apply_chat_template=True, **FAST), tmp_path / "mem",
                   model=model, tokenizer=tok)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert model.training is True
    assert scores(mem) == scores(on)


def test_compare_table_deltas():
    def report(v):
        return {"results": {"t": {"alias": "t", "acc,none": v, "acc_stderr,none": 0.1}}}

    table = compare_table([("base", report(0.25)), ("tuned", report(0.75))])
    assert table.splitlines()[-1] == "| t | acc | 0.2500 | 0.7500 | +0.5000 |"


# -- parity with the lm-eval CLI ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("chat", [False, True])
def test_same_numbers_as_the_lm_eval_cli(embedded, tmp_path, chat):
    ours = evaluate(Protocol(tasks=["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"], apply_chat_template=chat, **FAST),
                    tmp_path / "ours", model_dir=str(embedded.model_dir))
    cmd = shlex.split(ours["protocol"]["cli"])  # the command instructkit records: same include_path YAMLs
    assert cmd[:2] == ["lm-eval", "run"]
    cmd = [str(Path(sys.executable).with_name("lm-eval")), *cmd[1:], "--output_path", str(tmp_path / "cli")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cli = json.loads(next((tmp_path / "cli").rglob("results_*.json")).read_text())
    assert scores(cli) == scores(ours) and len(scores(ours)) == 8  # 5 subjects + the group + mc1 + mc2
    stderrs = lambda r: {(t, k): v for t, m in r["results"].items() for k, v in m.items() if "stderr" in k}  # noqa
    assert stderrs(cli) == stderrs(ours)
    assert cli["n-shot"] == ours["n-shot"] and cli["chat_template_sha"] == ours["protocol"]["chat_template_sha"]


# -- the end-of-training hook in a real recipe run ---------------------------------------------------------------
@pytest.mark.slow
def test_benchmarks_after_training_in_a_recipe_run(embedded, tmp_path):
    out = tmp_path / "run"
    done = launch("sft_full", "--max_steps", "4", "--per_device_train_batch_size", "8", "--output_dir", str(out),
                  "--logging_steps", "1", "--eval_max_samples", "8", "--eval_generation_metrics", "true",
                  "--eval_benchmarks", "mmlu", "truthfulqa_mc2", "--benchmark_data_dir", "fixture",
                  "--benchmark_limit", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout
    assert log.index("decontamination (8-gram overlap") < log.index("after training")
    metrics = json.loads((out / "metrics.json").read_text())
    bench = metrics["benchmarks"]
    assert {"local_mmlu/acc", "truthfulqa_mc2/acc", "mmlu_anatomy/acc"} <= set(bench["scores"])
    assert bench["protocol"]["adapter"] is None and bench["protocol"]["limit"] == 3
    assert set(metrics["decontamination"]["tasks"]) >= {"mmlu_anatomy", "truthfulqa_mc2"}
    gen = metrics["generation_metrics"]["test"]
    assert gen["n"] == 8 and gen["perplexity"] > 1 and {"exact_match", "rouge_l", "bleu"} <= set(gen)
    saved = json.loads((out / "benchmarks" / "benchmarks.json").read_text())
    assert saved["protocol"]["n_shot"]["mmlu_anatomy"] == 5 and (out / "benchmarks" / "benchmarks.md").is_file()
    assert "benchmarks (lm-evaluation-harness), after training" in log

    # the same run without benchmarks trains identically: the report before training left the global RNGs alone
    plain = launch("sft_full", "--max_steps", "4", "--per_device_train_batch_size", "8", "--output_dir",
                   str(tmp_path / "plain"), "--logging_steps", "1", "--eval_max_samples", "8")
    assert plain.returncode == 0, plain.stderr[-3000:]
    plain_metrics = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    losses = lambda m: [(h["step"], h["loss"]) for h in m["log_history"] if "loss" in h]  # noqa: E731
    assert len(losses(metrics)) == 4 and losses(plain_metrics) == losses(metrics)
    assert plain_metrics["exact_match"]["after"]["test"]["exact_match"] == metrics["exact_match"]["after"]["test"][
        "exact_match"]
