"""`instructkit generate` (batched, left padding) and `instructkit chat` (stdin, streamed), on the embedded base."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("instructkit"))
ROWS = [
    {"prompt": "Reverse cat."},
    {"prompt": "Write backwards: a much longer prompt with many more tokens in it than the first one has", "id": 7},
    {"instruction": "Add 3 and 4.", "input": ""},
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Upper case dog."}]},
    {"prompt": [{"role": "user", "content": "Make upper case: gcw"}]},
]


@pytest.fixture(scope="module")
def loaded(embedded):
    from instructkit.modeling.loading import load_for_inference

    return load_for_inference(str(embedded.model_dir))


def test_batched_answers_equal_one_at_a_time_for_prompts_of_different_lengths(embedded, loaded, tmp_path, capsys):
    from instructkit.commands.main import main
    from instructkit.data.formats import inference_prompt

    model, tok = loaded
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for batch_size in ("5", "1"):
        main(["generate", str(embedded.model_dir), "--input", str(prompts), "--output", str(tmp_path / f"{batch_size}.jsonl"),
              "--batch_size", batch_size, "--max_new_tokens", "8"])
    out = capsys.readouterr()
    assert "wrote 5 answers to" in out.out and "generating (prompts.jsonl)" in out.err  # the progress bar
    batched, single = ([json.loads(line) for line in (tmp_path / f"{b}.jsonl").read_text().splitlines()]
                       for b in ("5", "1"))
    assert [r["generation"] for r in batched] == [r["generation"] for r in single]
    assert [{k: v for k, v in r.items() if k not in ("generation", "stopped")} for r in batched] == ROWS  # order, fields

    # the rows really differ in length, and without left padding the batch would not match
    conversations = [inference_prompt(r) for r in ROWS]
    lengths = [len(tok.apply_chat_template(c, add_generation_prompt=True)["input_ids"]) for c in conversations]
    assert max(lengths) > 3 * min(lengths)
    tok.padding_side = "right"
    enc = tok.apply_chat_template(conversations, add_generation_prompt=True, padding=True, return_tensors="pt",
                                  return_dict=True)
    tok.padding_side = "left"
    right = model.generate(**enc, max_new_tokens=8, do_sample=False)
    right = [tok.decode(r, skip_special_tokens=True) for r in right[:, enc["input_ids"].shape[1]:]]
    assert right != [r["generation"] for r in single]


def test_a_row_without_a_prompt_names_file_and_row(embedded, tmp_path, capsys):
    from instructkit.commands.main import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Reverse cat."}\n{"text": "no prompt here"}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(embedded.model_dir), "--input", str(bad), "--output", str(tmp_path / "o.jsonl")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: 1 of 2 rows of {bad} have no usable prompt:\n  {bad} row 2: field 'prompt' missing (the row has " \
           "text)" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_chat_over_stdin_streams_the_greedy_answers_and_keeps_the_conversation(embedded, loaded):
    from instructkit.evaluation.generation import generate

    model, tok = loaded
    ask = lambda conversation: generate(model, tok, [conversation], max_new_tokens=8)[0]["text"]  # noqa: E731
    first = [{"role": "user", "content": "Reverse cat."}]
    a1 = ask(first)
    a2 = ask(first + [{"role": "assistant", "content": a1}, {"role": "user", "content": "Add 3 and 4."}])
    proc = subprocess.run([CLI, "chat", str(embedded.model_dir), "--max_new_tokens", "8"], text=True,
                          input="Reverse cat.\nAdd 3 and 4.\n/reset\nReverse cat.\n", capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == f"{a1}\n{a2}\n{a1}\n"  # after /reset the first question gets the first answer again
    assert "/reset clears the conversation" in proc.stderr and "(conversation cleared)" in proc.stderr
