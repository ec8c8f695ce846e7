"""Data set mixtures in the three forms people write them, read into instructkit's one form before anything loads.

* instructkit: `dataset_mixture: [{path, split, config, format, columns, weight}, ...]` (+ top-level
  `test_split_size`);
* the alignment-handbook (since its 2025 rewrite): `dataset_mixture: {datasets: [{id, config, split, columns,
  weight}], seed, test_split_size}`;
* TRL's CLI (`DatasetMixtureConfig`): top-level `datasets: [{path, name, data_dir, data_files, split, columns,
  fraction}]`, `streaming`, `test_split_size`.

Each entry becomes `{path, config, split, data_dir, data_files, format, columns, weight, fraction}` (unset keys
left out). The words keep each tool's meaning: `columns` as a list keeps those columns (handbook, TRL), as a mapping
renames them (instructkit); `weight` is the share of that data set's own rows that is used, a seeded sample (the
handbook's meaning; above 1 every row is used more than once); `fraction` is TRL's target share of the final
mixture (normalised over the entries, no data set oversampled, the first rows of each). The handbook's `seed`
becomes `dataset_mixture_seed`, its `test_split_size` the top-level one. Every problem is returned, not raised,
so it is reported with the config's other problems.
"""

from __future__ import annotations

from typing import Any

import yaml

from instructkit.config.renames import OLD_MIXTURE_KEYS
from instructkit.errors import close_match

ENTRY_KEYS = ("path", "id", "config", "name", "split", "data_dir", "data_files", "format", "columns", "weight",
              "fraction")
ALIASES = {"id": "path", "name": "config"}  # the handbook's / TRL's words for instructkit's
HANDBOOK_KEYS = ("datasets", "seed", "test_split_size")


def read_mixtures(config: dict, where: str, formats: tuple[str, ...]) -> tuple[dict, list[str]]:
    """`config` with any mixture in instructkit's form (see the module docstring), and the problems found."""
    config, problems = dict(config), []
    old = [k for k in OLD_MIXTURE_KEYS if k in config]
    if old:
        problems.append(_old_handbook_problem(config, old, where))
        for key in old:
            config.pop(key)
    mixture, datasets = config.pop("dataset_mixture", None), config.pop("datasets", None)
    streaming = config.pop("streaming", False)
    if streaming not in (False, None):
        problems.append(f"'streaming: {streaming}' in {where}: instructkit reads and checks every row before training, "
                        "so a mixture is not streamed (remove the key)")
    if mixture is not None and datasets is not None:
        problems.append(f"{where} sets both dataset_mixture and datasets (TRL's name for a mixture): keep one")
    if isinstance(mixture, dict):
        mixture = _lift_handbook(mixture, config, where, problems)
    entries = mixture if mixture is not None else datasets
    if entries is None:
        return config, problems
    key = "dataset_mixture" if mixture is not None else "datasets"
    if not isinstance(entries, list) or not entries:
        problems.append(f"{key!r} in {where} must be a non-empty list of data sets ({{path: ..., split: ...}})")
        return config, problems
    config["dataset_mixture"] = [_entry(e, f"{key} entry {i}", where, formats, problems)
                                 for i, e in enumerate(entries, 1)]
    fractions = [e.get("fraction") is not None for e in config["dataset_mixture"]]
    if any(fractions) and not all(fractions):
        problems.append(f"{key} in {where}: 'fraction' is set for some entries but not all (TRL's rule: all or none)")
    return config, problems


def _lift_handbook(mixture: dict, config: dict, where: str, problems: list[str]):
    """The handbook's `{datasets, seed, test_split_size}`: its entries, with seed and test_split_size lifted."""
    for key in mixture:
        if key not in HANDBOOK_KEYS:
            near = close_match(str(key), HANDBOOK_KEYS, cutoff=0.8)
            problems.append(f"unknown key {key!r} in dataset_mixture in {where}"
                            + (f" — did you mean {near!r}?" if near else f" (it holds: {', '.join(HANDBOOK_KEYS)})"))
    if "seed" in mixture:
        config["dataset_mixture_seed"] = mixture["seed"]
    if mixture.get("test_split_size") is not None:
        size = mixture["test_split_size"]
        if "test_split_size" in config and config["test_split_size"] != size:
            problems.append(f"{where} sets test_split_size twice ({config['test_split_size']!r} and "
                            f"{size!r} in dataset_mixture): keep one")
        config["test_split_size"] = size
    return mixture.get("datasets", [])


def _entry(entry: Any, name: str, where: str, formats: tuple[str, ...], problems: list[str]) -> dict:
    """One mixture entry in instructkit's form; its problems appended."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path", entry.get("id")), str):
        problems.append(f"{name} in {where} has no path (write {{path: ..., split: ...}}; the handbook writes id:)")
        return {}
    label = f"{name} ({entry.get('path', entry.get('id'))}) in {where}"
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key not in ENTRY_KEYS:
            near = close_match(str(key), ENTRY_KEYS, cutoff=0.8)
            problems.append(f"unknown key {key!r} in {label}" + (
                f" — did you mean {near!r}?" if near else f" (an entry takes: {', '.join(ENTRY_KEYS)})"))
            continue
        canonical = ALIASES.get(key, key)
        if canonical in out:
            problems.append(f"{label} sets {canonical!r} twice ({key!r} is the same key)")
        problem = _value_problem(canonical, value, formats)
        if problem:
            problems.append(f"{key!r} of {label}: {problem}")
        out[canonical] = value
    if "weight" in out and "fraction" in out:
        problems.append(f"{label} sets both weight (the share of its own rows) and fraction (TRL's share of the "
                        "mixture): keep one")
    return out


def _value_problem(key: str, value, formats: tuple[str, ...]) -> str | None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in ("path", "config", "split", "data_dir") and not isinstance(value, str):
        return f"{value!r} is not a string"
    if key == "data_files" and not isinstance(value, (str, list, dict)):
        return f"{value!r} is not a file, a list of files or a mapping of split names to files"
    if key == "format" and value not in formats:
        near = close_match(str(value), formats)
        return f"{value!r} is not one of {', '.join(formats)}" + (f" — did you mean {near!r}?" if near else "")
    if key == "columns" and not (_strings(value) or (isinstance(value, dict) and _strings(list(value.items()),
                                                                                           pairs=True))):
        return ("write a list of the columns to keep ([messages]) or a mapping that renames them "
                "({question: instruction})")
    if key in ("weight", "fraction") and not (number and value > 0):
        return f"{value!r} is not a positive number" + (
            " (weight: the share of this data set's rows used, 1.0 = all of them once)" if key == "weight" else "")
    return None


def _strings(values, pairs: bool = False) -> bool:
    if not isinstance(values, list) or not values:
        return False
    items = [v for pair in values for v in pair] if pairs else values
    return all(isinstance(v, str) for v in items)


def _old_handbook_problem(config: dict, old: list[str], where: str) -> str:
    """The 2023 handbook mixture keys, answered with the current form written out for these data sets."""
    mixer = config.get("dataset_mixer") or {}
    splits = config.get("dataset_splits") or ["train", "test"]
    configs = config.get("dataset_configs") or [None] * len(mixer)
    entries = [{"id": name, **({"config": cfg} if cfg else {}), "split": split,
                "weight": weight if any(s in split for s in ("train",)) else 1.0}
               for (name, weight), cfg in zip(mixer.items(), configs) for split in splits] if isinstance(mixer, dict) \
        else []
    current = yaml.safe_dump({"dataset_mixture": {"datasets": entries, "test_split_size": 0.05, "seed": 0}},
                             default_flow_style=True, sort_keys=False, width=1000).strip()
    single = (isinstance(mixer, dict) and len(mixer) == 1 and list(mixer.values()) == [1.0] and
              [s for s in splits if "train" in s][:1] and [s for s in splits if "test" in s][:1])
    same_rows = ""
    if single:
        train = next(s for s in splits if "train" in s)
        test = next(s for s in splits if "test" in s)
        same_rows = (f"; or, to keep {test} as the held-out split as these keys did: dataset_name: {next(iter(mixer))}, "
                     f"dataset_train_split: {train}, dataset_test_split: {test}")
    return (f"{' and '.join(repr(k) for k in old)} in {where}: the alignment-handbook's mixture keys before its "
            f"2025 rewrite (#221), which it no longer reads either; its current form: {current}{same_rows}")
