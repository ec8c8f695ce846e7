"""Recipe arguments: YAML config + command-line overrides, checked before anything heavy loads.

`parse_args` wraps `trl.TrlParser` and keeps its semantics (`--config x.yaml` values become defaults,
`--key value` on the command line overrides them, a YAML `env:` mapping sets environment variables), but checks
the YAML and the command line first. TRL lets several mistakes through or reports them badly:

* unknown YAML keys are silently ignored by TRL's own scripts (`fail_with_unknown_args=False`);
* YAML values bypass argparse `choices` (`packing_strategy: ffd` only fails at trainer init);
* type errors end in an argparse usage dump; `__post_init__` errors don't say which file caused them;
* argparse accepts abbreviated flags (`--learning_rat` silently sets `learning_rate`);
* nothing checks ranges (`--per_device_train_batch_size 0` fails in torch after the data is read);
* a key set twice in a YAML file is taken silently (the last one wins).

Every such problem becomes one `InstructkitError` naming the key, where it came from and the fix.
"""

import argparse
import dataclasses
import enum
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from instructkit.config.machine import OUR_DEFAULTS, machine_defaults
from instructkit.config.ranges import range_problem
from instructkit.errors import InstructkitError, close_match

COMMAND_LINE = "command line"

# Keys that TRL renamed or removed: an unknown-key error names the replacement instead of a fuzzy match.
RENAMED_KEYS = {
    "max_seq_length": "TRL renamed it: use 'max_length'",
    "max_prompt_length": "removed in TRL 1.x: use 'max_length' (it limits prompt + completion)",
    "max_completion_length": "removed in TRL 1.x: use 'max_length' (it limits prompt + completion)",
}

# Same rule as argparse: "-1" or "-.5" after a flag is a value, not an option.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def parse_args(dataclass_types, args=None, default_config=None, fixed: dict | None = None) -> tuple:
    """Parse YAML config + command line into instances of `dataclass_types`, in order.

    `default_config` is used as the config file when `--config` is not given. `fixed`: settings the recipe decides
    (sft_qlora: `load_in_4bit: true`); a config that sets one of them otherwise is refused. All problems found in
    the YAML and on the command line are reported together, before any model or data loads.
    """
    cli_args = list(sys.argv[1:] if args is None else args)
    config_path, cli_args = _pop_config(cli_args)
    if config_path is None and default_config is not None:
        config_path = str(default_config)
    config = _load_config(config_path) if config_path is not None else {}

    parser = _recipe_parser(list(dataclass_types))
    fields = _fields_by_name(dataclass_types)
    parser.set_defaults(**{k: v for k, v in {**machine_defaults(), **OUR_DEFAULTS, **(fixed or {})}.items()
                           if k in fields})
    problems = _check_config(config, config_path, fields, _actions_by_dest(parser))
    problems += _check_command_line(cli_args, fields, parser)
    _raise_problems(problems)

    trl_args = (["--config", config_path] if config_path is not None else []) + cli_args
    source = config_path or "the " + COMMAND_LINE
    try:
        parsed = parser.parse_args_and_config(trl_args)
    except ValueError as err:  # dataclass __post_init__ validation, e.g. TrainingArguments
        raise InstructkitError(f"{' '.join(str(err).split()).rstrip('.')} (while reading {source}).",
                               fix="change one of the conflicting values named above.") from err
    _raise_problems(_fixed_problems(parsed, fixed or {}, source))
    return parsed


def _recipe_parser(dataclass_types):
    """TrlParser that raises `InstructkitError` instead of printing a usage dump and exiting, and takes no
    abbreviated flags (argparse would otherwise take `--learning_rat` as `--learning_rate`)."""
    from trl import TrlParser

    class RecipeParser(TrlParser):
        def error(self, message):
            raise InstructkitError(f"{message} (on the {COMMAND_LINE})", fix="run the recipe with --help.")

        def parse_args_into_dataclasses(self, args=None, return_remaining_strings=False):
            # HfArgumentParser would otherwise read a `<script>.args` file next to the entry point if one
            # exists: a hidden input that bypasses the checks here.
            return super().parse_args_into_dataclasses(
                args, return_remaining_strings=return_remaining_strings, look_for_args_file=False
            )

    return RecipeParser(dataclass_types, allow_abbrev=False)


def _raise_problems(problems: list[str]) -> None:
    if problems:
        message = "; ".join(problems)
        raise InstructkitError(message if message.endswith("?") else message + ".",
                               fix="correct the keys above (run the recipe with --help to list every key).")


def _fixed_problems(parsed, fixed: dict, source: str) -> list[str]:
    """Settings the recipe fixes that the config sets otherwise."""
    values = {f.name: getattr(p, f.name) for p in parsed for f in dataclasses.fields(p)}
    return [f"{key!r} in {source} is {values[key]!r}, but this recipe fixes it to {value!r} (another recipe trains "
            f"that way: instructkit list shows them)" for key, value in fixed.items() if values.get(key) != value]


def _pop_config(args: list[str]) -> tuple[str | None, list[str]]:
    """Take `--config PATH` or `--config=PATH` out of `args`."""
    config_path, rest = None, []
    tokens = iter(args)
    for token in tokens:
        if token != "--config" and not token.startswith("--config="):
            rest.append(token)
            continue
        if config_path is not None:
            raise InstructkitError("--config is given twice on the command line.", fix="pass a single --config.")
        config_path = token.partition("=")[2] if "=" in token else next(tokens, "")
        if not config_path or config_path.startswith("-"):
            raise InstructkitError("--config on the command line has no file path.", fix="use --config path/to.yaml.")
    return config_path, rest


def load_checked_config(path: str, types_for) -> dict[str, Any]:
    """A recipe YAML read and checked as a recipe checks it (unknown keys with a suggestion, value types), not parsed:
    for tools that read a recipe's config without running it (`instructkit estimate`). `types_for(config)` gives the
    recipe's dataclass types."""
    from trl import TrlParser

    config = _load_config(path)
    dataclass_types = types_for(config)
    fields = _fields_by_name(dataclass_types)
    _raise_problems(_check_config(config, path, fields, _actions_by_dest(TrlParser(list(dataclass_types)))))
    return config


def _load_config(path: str) -> dict[str, Any]:
    """Read the YAML config file; every way it can be unreadable becomes an `InstructkitError`."""
    if not Path(path).is_file():
        raise InstructkitError(
            f"config file {path} does not exist (relative paths start at {os.getcwd()}).",
            fix="pass --config with the path of an existing YAML file.",
        )
    loader = _DuplicateKeyLoader(Path(path).read_text(encoding="utf-8"))
    try:
        config = loader.get_single_data()
    except yaml.YAMLError as err:
        raise InstructkitError(
            f"config file {path} is not valid YAML: {' '.join(str(err).split())}",
            fix="fix the YAML syntax at the line shown (indentation, a missing ':' or an unclosed quote).",
        ) from err
    finally:
        loader.dispose()
    if loader.duplicates:
        twice = "; ".join(f"{key!r} is set on line {first} and again on line {again}"
                          for key, first, again in loader.duplicates)
        raise InstructkitError(f"config file {path} sets a key twice: {twice} (YAML would keep the last one "
                               "silently).", fix="keep one line per key.")
    if not isinstance(config, dict):
        raise InstructkitError(
            f"config file {path} must be a YAML mapping of 'key: value' lines, not {type(config).__name__}.",
            fix="write one 'key: value' per line, e.g. 'learning_rate: 2.0e-4'.",
        )
    if not isinstance(config.get("env", {}), dict):
        raise InstructkitError(
            f"'env' in {path} must be a mapping of environment variables.", fix="write e.g. 'env: {HF_HUB_OFFLINE: 1}'."
        )
    return config


class _DuplicateKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that records every key a mapping sets twice, with both lines (PyYAML keeps the last)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[Any, int, int]] = []

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                if key in lines:
                    self.duplicates.append((key, lines[key], line))
                lines.setdefault(key, line)
        return super().construct_mapping(node, deep)


def _fields_by_name(dataclass_types) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every settable field with its resolved type hint.

    Hints come from `typing.get_type_hints`, not `field.type`: HfArgumentParser overwrites `field.type` on the
    shared dataclass fields (and narrows `X | None` to `X`).
    """
    fields = {}
    for dataclass_type in dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for field in dataclasses.fields(dataclass_type):
            if field.init:
                fields[field.name] = (field, hints[field.name])
    return fields


def _actions_by_dest(parser) -> dict[str, argparse.Action]:
    """The main argparse action of each field (not its `--no_*` complement, which shares the dest)."""
    actions = {}
    for action in parser._actions:
        if action.option_strings:
            actions.setdefault(action.dest, action)
    return actions


def _check_config(config, path, fields, actions) -> list[str]:
    """Problems with the YAML keys and values; TRL itself checks neither the values nor (in its scripts) the keys."""
    problems = []
    for key, value in config.items():
        if key == "env":
            continue
        if key not in fields:
            problems.append(_unknown(f"key {key!r} in {path}", key, close_match(str(key), fields)))
            continue
        field, hint = fields[key]
        problem = _check_value(value, field, hint, actions[key])
        if problem:
            problems.append(f"{key!r} in {path}: {problem}")
    return problems


def _check_command_line(args, fields, parser) -> list[str]:
    """Problems with the command-line flags, found by walking the tokens the way argparse will."""
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    long_flags = [flag for flag in by_flag if flag.startswith("--")]
    problems = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--" or not _is_option(token):
            problems.append(
                f"unexpected argument {token!r} on the {COMMAND_LINE}: options are written '--key value'"
            )
            continue
        flag, has_inline, inline = token.partition("=")
        values = [inline] if has_inline else []
        action = by_flag.get(flag)
        if action is None:
            while i < len(args) and not _is_option(args[i]):  # the unknown flag's values: don't also report them
                i += 1
            key = flag.lstrip("-").replace("-", "_")
            problems.append(_unknown(f"flag {flag!r} on the {COMMAND_LINE}", key, close_match(flag, long_flags)))
            continue
        if not has_inline and action.nargs != 0:
            wanted = len(args) if action.nargs == "+" else 1
            while i < len(args) and len(values) < wanted and not _is_option(args[i]):
                values.append(args[i])
                i += 1
        if not values and action.nargs in (None, "+"):
            problems.append(f"{flag!r} on the {COMMAND_LINE} needs a value")
        elif values and action.dest in fields:
            field, hint = fields[action.dest]
            problem = _check_value(values if action.nargs == "+" else values[0], field, hint, action)
            if problem:
                problems.append(f"{flag!r} on the {COMMAND_LINE}: {problem}")
    return problems


def _is_option(token: str) -> bool:
    return token.startswith("-") and not _NEGATIVE_NUMBER.match(token)


def _unknown(what: str, key, suggestion: str | None) -> str:
    """`unknown <what>` plus the fix for a renamed TRL key, or the closest valid spelling."""
    if key in RENAMED_KEYS:
        return f"unknown {what} — {RENAMED_KEYS[key]}"
    return f"unknown {what}" + (f" — did you mean {suggestion!r}?" if suggestion else "")


def _check_value(value, field: dataclasses.Field, hint, action: argparse.Action) -> str | None:
    """What is wrong with `value` for `field`, or None.

    Strings (all CLI values, quoted or unquoted YAML scalars) are converted the way argparse will convert them;
    other YAML values (numbers, booleans, lists, mappings) reach the dataclass as they are, so they are checked
    against the type hint. Numbers are then checked against their key's range (`config.ranges`).
    """
    if isinstance(value, list) and action.nargs == "+" and all(isinstance(v, str) for v in value):
        strings = value
    else:
        strings = [value] if isinstance(value, str) else []
    converted = []
    for item in strings:
        try:
            converted.append(action.type(item))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            return f"{item!r} is not a valid {_type_name(hint)}"
    if not strings and not _matches(value, hint):
        shown = "an empty value" if value is None else f"{value!r} ({type(value).__name__})"
        return f"{shown} is not a valid {_type_name(hint)}"
    out_of_range = range_problem(field.name, converted if strings else value)
    if out_of_range:
        return out_of_range
    allowed = _allowed_values(field, hint)
    if allowed:
        for item in value if isinstance(value, list) else [value]:
            if item is not None and str(item) not in allowed:
                match = close_match(str(item), allowed)
                return (
                    f"{item!r} is not one of {', '.join(allowed)}"
                    + (f" — did you mean {match!r}?" if match else "")
                )
    return None


def _allowed_values(field: dataclasses.Field, hint) -> list[str] | None:
    """The allowed values from `metadata["choices"]`, or from an Enum/Literal in the type hint."""
    if "choices" in field.metadata:
        return [str(c) for c in field.metadata["choices"]]
    for part in _flatten(hint):
        if isinstance(part, type) and issubclass(part, enum.Enum):
            return [str(member.value) for member in part]
        if typing.get_origin(part) is typing.Literal:
            return [str(arg) for arg in typing.get_args(part)]
    return None


def _flatten(hint) -> list:
    """`hint` and every type nested in it (union members, list items)."""
    return [hint] + [inner for arg in typing.get_args(hint) for inner in _flatten(arg)]


def _matches(value, hint) -> bool:
    """Whether a non-string YAML value fits the type hint. Types YAML can't express are not checked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple) or hint in (list, tuple):
        item_hint = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return isinstance(value, list) and all(_matches(v, item_hint) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return isinstance(value, str)
    return True


def _type_name(hint) -> str:
    """A readable name for a type hint, e.g. 'int', 'true/false or null', 'list of str'."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_type_name(arg) for arg in typing.get_args(hint)))
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true/false"
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "str"
    return getattr(hint, "__name__", str(hint))
