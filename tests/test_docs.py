"""Every command the README and docs/ show is real: `instructkit ...` lines parse with the CLI's parser, and
`accelerate launch ...` lines name launch configs and recipes that exist, with options the recipe accepts."""

import re
import shlex

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAUNCHER_OPTIONS = {"--config_file": 1, "--num_processes": 1, "--num_machines": 1, "--machine_rank": 1,
                    "--main_process_ip": 1, "--main_process_port": 1, "-q": 0, "--multi_gpu": 0, "--cpu": 0}


def commands(prefix: str) -> list[tuple[str, str]]:
    """(page, command) for every command starting with `prefix` in a code block, or in a `code` span of prose that
    is a whole command (more than the bare name of a subcommand)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = [b for b in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
                  if "\nerror: " not in b]  # transcripts of mistakes, shown with the error they give
        lines = [line.strip().removeprefix("$ ") for block in blocks for line in block.splitlines()]
        spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        lines += [span for span in spans if len(span.split()) > 2 or span.split()[1:2] in (["list"], ["embedded"])]
        for line in lines:
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("cd "):
                    continue
                if part.startswith(prefix + " "):
                    found.append((page.name, part))
    return found


def test_the_docs_show_commands():
    assert len(commands("accelerate launch")) > 10 and len(commands("instructkit")) > 10


@pytest.mark.parametrize("page, command", commands("instructkit"), ids=lambda x: x[:60] if isinstance(x, str) else x)
def test_instructkit_commands_parse(page, command):
    from instructkit.commands.main import build_parser

    tokens = shlex.split(command, comments=True)[1:]
    if not tokens or tokens[0].startswith("<"):
        return
    args, extra = build_parser().parse_known_args(tokens)
    assert not extra or getattr(args, "takes_overrides", False), (page, command)


def recipe_types(script: str):
    from trl import DPOConfig, ModelConfig, SFTConfig

    from instructkit.config.arguments import EvaluateArguments, InstructkitArguments

    name = script.rsplit("/", 1)[-1].removesuffix(".py")
    assert (ROOT / "recipes" / f"{name}.py").is_file(), f"no recipe {script}"
    if name == "evaluate":
        return (EvaluateArguments,)
    return (InstructkitArguments, DPOConfig if name == "dpo" else SFTConfig, ModelConfig)


@pytest.mark.parametrize("page, command", commands("accelerate launch"), ids=lambda x: x[:70] if isinstance(x, str) else x)
def test_accelerate_commands_name_real_files_and_options(page, command):
    from instructkit.config.parsing import parse_args

    tokens = shlex.split(command, comments=True)[2:]
    i = 0
    while i < len(tokens) and tokens[i].startswith("-"):
        flag = tokens[i]
        assert flag in LAUNCHER_OPTIONS, (page, command, flag)
        if flag == "--config_file":
            assert (ROOT / tokens[i + 1]).is_file() or tokens[i + 1].startswith("accelerate_configs/"), command
            assert (ROOT / "accelerate_configs" / tokens[i + 1].split("/")[-1]).is_file(), command
        i += 1 + LAUNCHER_OPTIONS[flag]
    if i >= len(tokens) or not tokens[i].endswith(".py"):
        return  # prose naming the launcher or one of its options, not a whole command
    script, recipe_args = tokens[i], tokens[i + 1:]
    if "<" in script:
        return  # "recipes/<recipe>.py": any recipe
    if "--config" in recipe_args:  # an example config of the user's: its keys are not ours to check here
        at = recipe_args.index("--config")
        config = recipe_args[at + 1]
        recipe_args = recipe_args[:at] + recipe_args[at + 2:]
        if config.startswith("recipes/"):
            assert (ROOT / config).is_file(), command
    placeholders = [a for a in recipe_args if a.startswith("<")]
    assert not placeholders, command
    if script.endswith("evaluate.py") and "--models" not in recipe_args:
        recipe_args += ["--models", "x"]
    parse_args(recipe_types(script), args=recipe_args)
