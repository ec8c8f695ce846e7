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

from instructkit.chat_templates import template_problem
from instructkit.config.machine import OUR_DEFAULTS, machine_checks, machine_defaults
from instructkit.config.mixtures import read_mixtures
from instructkit.config.ranges import range_problem
from instructkit.config.renames import STALE_KEYS, read_stale, read_stale_value
from instructkit.errors import InstructkitError, close_match
from instructkit.log import log

COMMAND_LINE = "command line"
KEY_CUTOFF = 0.75  # a "did you mean" for a typo, not for a different key that looks alike

# Same rule as argparse: "-1" or "-.5" after a flag is a value, not an option.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def parse_args(dataclass_types, args=None, default_config=None, fixed: dict | None = None) -> tuple:
    """Parse YAML config + command line into instances of `dataclass_types`, in order.

    `default_config` is used as the config file when `--config` is not given. `fixed`: settings the recipe decides
    (sft_qlora: `load_in_4bit: true`); a config that sets one of them otherwise is refused. Keys and values an older
    TRL / transformers / alignment-handbook wrote are read as their current form where the meaning carries over
    (`config.renames`, a note each), mixtures in any of their three forms (`config.mixtures`). All problems found in
    the YAML and on the command line, and every setting this machine cannot honour (`config.machine`), are reported
    together in one error, before any model or data loads.
    """
    cli_args = list(sys.argv[1:] if args is None else args)
    config_path, cli_args = _pop_config(cli_args)
    if config_path is None and default_config is not None:
        config_path = str(default_config)
    config = _load_config(config_path) if config_path is not None else {}
    for key, value in config.pop("env", {}).items():  # as TrlParser does: the config's env first
        os.environ[key] = str(value)

    parser = _recipe_parser(list(dataclass_types))
    fields = _fields_by_name(dataclass_types)
    own = {name for t in dataclass_types for name in getattr(t, "no_machine_defaults", ())}
    defaults = {k: v for k, v in {**machine_defaults(), **OUR_DEFAULTS, **(fixed or {})}.items()
                if k in fields and k not in own}
    parser.set_defaults(**defaults)
    actions = _actions_by_dest(parser)
    config, problems, notes = _read_config_forms(config, config_path, fields)
    cli_args, cli_problems, cli_notes = _read_stale_flags(cli_args, fields)
    cli_values: dict[str, Any] = {}
    problems += _check_config(config, config_path, fields, actions, skip=_flag_dests(cli_args, parser))
    problems += cli_problems + _check_command_line(cli_args, fields, parser, cli_values)
    checks = machine_checks({**{name: f.default for name, (f, _) in fields.items()}, **defaults, **config,
                             **cli_values})
    _raise_problems(problems + checks.problems, checks.overrides, checks.warnings)
    for note in notes + cli_notes:
        log(f"config: {note}")
    for warning in checks.warnings:
        log(f"warning: {warning}")

    source = config_path or "the " + COMMAND_LINE
    parser.set_defaults_with_config(**config)
    try:
        parsed = parser.parse_args_into_dataclasses(args=cli_args)
    except ValueError as err:  # dataclass __post_init__ validation, e.g. TrainingArguments
        raise InstructkitError(f"{' '.join(str(err).split()).rstrip('.')} (while reading {source}).",
                               fix="change one of the conflicting values named above.") from err
    _raise_problems(_fixed_problems(parsed, fixed or {}, source))
    return parsed


def _read_config_forms(config: dict, path: str, fields) -> tuple[dict, list[str], list[str]]:
    """The YAML config with old keys / values read as their current form (notes), mixtures in instructkit's form;
    and the problems where no current form means the same."""
    formats = tuple(fields["dataset_format"][0].metadata.get("choices", ())) if "dataset_format" in fields else ()
    config, problems = read_mixtures(config, path, tuple(f for f in formats if f != "auto")) \
        if "dataset_mixture" in fields else (dict(config), [])
    notes: list[str] = []
    for key in [k for k in config if k not in fields and k in STALE_KEYS]:
        value = config.pop(key)
        new, converted, note, problem = read_stale(key, value, path)
        if problem:
            problems.append(problem)
        elif new is not None and new in config and config[new] != converted:
            problems.append(f"{path} sets both {key!r} (an old name) and {new!r}: keep {new!r}")
        elif new is not None:
            config[new] = converted
        notes += [note] if note else []
    for key, value in list(config.items()):
        config[key], note = read_stale_value(key, value)
        notes += [f"{note} in {path}"] if note else []
    return config, problems, notes


def _read_stale_flags(args: list[str], fields) -> tuple[list[str], list[str], list[str]]:
    """The command line with old flags / values in their current form (a flag's value read as YAML reads it)."""
    out, problems, notes = [], [], []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        flag, has_inline, inline = token.partition("=")
        key = flag.lstrip("-").replace("-", "_") if _is_option(token) else None
        if key is None or (key not in STALE_KEYS and read_stale_value(key, inline or _next(args, i))[1] is None):
            out.append(token)
            continue
        raw = inline if has_inline else _next(args, i)
        i += 0 if has_inline or raw is None else 1
        if key in STALE_KEYS and key not in fields:
            value = True if raw is None else yaml.safe_load(raw)
            new, converted, note, problem = read_stale(key, value, f"flag --{key} on the {COMMAND_LINE}")
            problems += [problem] if problem else []
            notes += [note] if note else []
            out += [f"--{new}", *_as_tokens(converted)] if new is not None else []
            continue
        converted, note = read_stale_value(key, raw)
        notes.append(f"{note} on the {COMMAND_LINE}")
        out += [flag, str(converted)]
    return out, problems, notes


def _next(args: list[str], i: int) -> str | None:
    """The value token at `i`, if there is one (not another option)."""
    return args[i] if i < len(args) and not _is_option(args[i]) else None


def _as_tokens(value) -> list[str]:
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _flag_dests(args: list[str], parser) -> set[str]:
    """The fields the command line sets: their YAML values are overridden, so only the command line's are checked."""
    by_flag = {flag: action.dest for action in parser._actions for flag in action.option_strings}
    return {by_flag[t.partition("=")[0]] for t in args if _is_option(t) and t.partition("=")[0] in by_flag}


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


def _raise_problems(problems: list[str], overrides: list[str] = (), warnings: list[str] = ()) -> None:
    """One error for every problem; settings this machine cannot honour end with the overrides that make the run
    go here, all on one line to copy."""
    if not problems:
        return
    if len(problems) == 1 and not warnings:
        message = problems[0] if problems[0].endswith("?") else problems[0] + "."
    else:
        message = f"{len(problems)} problem{'s' * (len(problems) > 1)} with this run's settings:\n" + "".join(
            f"  - {p}\n" for p in problems) + "".join(f"  (warning: {w})\n" for w in warnings)
    fix = "correct the keys above (run the recipe with --help to list every key)."
    if overrides:
        others = len(problems) > len(overrides)
        fix = (f"on this machine, add {' '.join(overrides)} to the command line"
               + ("; correct the other keys above." if others else "."))
    raise InstructkitError(message, fix=fix)


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
    config.pop("env", None)
    dataclass_types = types_for(config)
    fields = _fields_by_name(dataclass_types)
    config, problems, _ = _read_config_forms(config, path, fields)
    _raise_problems(problems + _check_config(config, path, fields, _actions_by_dest(TrlParser(list(dataclass_types)))))
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


def _check_config(config, path, fields, actions, skip=frozenset()) -> list[str]:
    """Problems with the YAML keys and values; TRL itself checks neither the values nor (in its scripts) the keys.
    The values of keys in `skip` (set again on the command line) are not checked: the command line's are."""
    problems = []
    for key, value in config.items():
        if key == "env":
            continue
        if key not in fields:
            problems.append(_unknown(f"key {key!r} in {path}", key, close_match(str(key), fields, KEY_CUTOFF)))
            continue
        if key in skip:
            continue
        field, hint = fields[key]
        problem = _check_value(value, field, hint, actions[key]) or _special_problem(key, value)
        if problem:
            problems.append(f"{key!r} in {path}: {problem}")
    return problems


def _special_problem(key: str, value) -> str | None:
    """Checks of a value beyond its type: a chat template must compile."""
    if key in ("chat_template", "chat_template_path") and isinstance(value, str):
        return template_problem(value)
    return None


def _check_command_line(args, fields, parser, values: dict | None = None) -> list[str]:
    """Problems with the command-line flags, found by walking the tokens the way argparse will; the values that pass
    go into `values` (converted as argparse will)."""
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    long_flags = [flag for flag in by_flag if flag.startswith("--")]
    problems, converted = [], values
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
            problems.append(_unknown(f"flag {flag!r} on the {COMMAND_LINE}", key,
                                     close_match(flag, long_flags, KEY_CUTOFF)))
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
            value = values if action.nargs == "+" else values[0]
            problem = _check_value(value, field, hint, action) or _special_problem(action.dest, value)
            if problem:
                problems.append(f"{flag!r} on the {COMMAND_LINE}: {problem}")
            elif converted is not None:
                to_type = action.type or (lambda v: v)
                converted[action.dest] = [to_type(v) for v in value] if action.nargs == "+" else to_type(value)
        elif not values and action.nargs in (0, "?") and converted is not None and action.dest in fields:
            converted[action.dest] = action.const
    return problems


def _is_option(token: str) -> bool:
    return token.startswith("-") and not _NEGATIVE_NUMBER.match(token)


def _unknown(what: str, key, suggestion: str | None) -> str:
    """`unknown <what>` plus the closest valid spelling, when one is close enough to be a typo."""
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
