"""The `instructkit` console script."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("instructkit"))


def test_list_shows_every_recipe_with_its_command():
    out = subprocess.run([CLI, "list"], capture_output=True, text=True, check=True).stdout
    for recipe in ("sft_full", "sft_lora", "sft_qlora"):
        assert f"accelerate launch recipes/{recipe}.py --config recipes/configs/{recipe}.yaml" in out
    assert "accelerate_configs/single_gpu.yaml" in out
    per_model = out.split("per-model configs")[1]
    for model in ("qwen2.5-7b", "llama-3.1-8b", "mistral-7b", "smollm2-1.7b"):
        assert f"recipes/sft_qlora.py --config recipes/configs/{model}/sft_qlora.yaml" in per_model
    assert "8 GPUs x 80 GB (deepspeed_zero3.yaml)" in per_model and "--num_processes 8 recipes/dpo.py" in per_model


def test_list_piped_into_a_reader_that_stops_ends_quietly():
    """`instructkit list | head -3`: the closed pipe ends the command without a traceback."""
    out = subprocess.run(f"'{CLI}' list | head -3", shell=True, capture_output=True, text=True, check=True)
    assert len(out.stdout.splitlines()) == 3 and "Traceback" not in out.stderr and not out.stderr.strip()


def test_embedded_reports_the_cached_build(embedded):
    out = subprocess.run([CLI, "embedded", "--json"], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["model_dir"] == str(embedded.model_dir)
    assert info["weights_sha256"] == embedded.info["weights_sha256"]


def test_inspect_marks_trained_tokens_and_prints_statistics(embedded, capsys):
    """In-process (as `instructkit inspect --config ... -n 2`): rows with markers, per-split statistics, preflight."""
    from instructkit.commands.main import main

    config = Path(__file__).resolve().parent.parent / "recipes" / "configs" / "sft_full.yaml"
    main(["inspect", "--config", str(config), "-n", "2", "--max_length", "96"])
    out = capsys.readouterr().out
    assert "== 2 training rows (trained tokens between ⟦ and ⟧)" in out
    rows = out.split("-- tokenized row ")[1:3]
    assert len(rows) == 2 and all("<|im_start|>assistant\n⟦" in r and "<|im_end|>⟧" in r for r in rows)
    assert "format: alpaca, max_length: 96, loss on: the completion's assistant content and end-of-turn token" in out
    for split in ("train", "test", "test_phrasings"):
        assert re.search(rf"\n{split}: (\d+) rows -> \1 tokenized, [\d,]+ tokens, [\d,]+ trained \(\d+\.\d%\)\n"
                         r"  length p50/p90/p99/max: \d+/\d+/\d+/\d+ \(max_length 96\)\n  truncated: \d+", out), out
    assert "preflight ok: " in out and "end of turn '<|im_end|>' trained" in out


def test_inspect_shows_the_masks_found_on_a_stock_template(family, tmp_path, capsys):
    """Qwen2.5's own template (no markers): the tokens instructkit's prefix rendering trains, tool calls included,
    tool results and the newlines around each turn not."""
    from families import chat_rows, write_jsonl
    from instructkit.commands.main import main

    data = write_jsonl(tmp_path / "chats.jsonl", chat_rows())
    main(["inspect", "--model_name_or_path", str(family("qwen2.5").model_dir), "--dataset_name", str(data), "-n", "6",
          "--test_split_size", "0"])
    out = capsys.readouterr().out
    assert "<|im_start|>assistant\n⟦Paris.<|im_end|>⟧\n<|im_start|>user\nAnd of Spain?" in out
    assert '<|im_start|>assistant\n⟦<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n' \
           '</tool_call><|im_end|>⟧\n<|im_start|>user\n<tool_response>\n21 C, sunny\n</tool_response><|im_end|>' in out
    assert "loss on: assistant turns (content and end-of-turn token), found by rendering prefixes of the chat " \
           "template" in out
    assert "preflight ok: 6 training rows, end of turn '<|im_end|>' trained" in out


def test_inspect_rejects_a_bad_override_like_a_recipe(capsys):
    from instructkit.commands.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--max_lenght", "64"])
    assert exit_info.value.code == 2
    assert "did you mean '--max_length'?" in capsys.readouterr().err


def test_every_instructkit_command_in_the_readme_parses():
    """The README's `instructkit ...` lines use real subcommands and options (docs tested where they hold commands)."""
    import shlex

    from instructkit.commands.main import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    commands = [shlex.split(line, comments=True) for line in readme.splitlines() if line.startswith("instructkit ")]
    assert {c[1] for c in commands} >= {"list", "cp", "merge", "chat", "generate", "serve", "eval", "decontaminate"}
    for command in commands:
        args, extra = build_parser().parse_known_args(command[1:])
        assert not extra or args.command in ("inspect", "eval"), command
