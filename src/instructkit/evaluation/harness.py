"""Benchmarks through lm-evaluation-harness's own task definitions (MMLU, TruthfulQA, any lm-eval task), offline.

Nothing here re-implements a benchmark: prompts, few-shot splits, choices, metrics (mc2 scoring included) and group
aggregation are lm-eval's. What instructkit adds is what goes wrong around it:

* offline data: with `data_dir` (a folder laid out like the hub, e.g. `<data_dir>/cais/mmlu`,
  `<data_dir>/truthfulqa/truthful_qa`) every requested task becomes a group YAML in an `--include_path` folder that
  references the built-in tasks and overrides only `dataset_path` (the recipe STACK_EVAL.md verified); the same folder
  is given to the `lm-eval` CLI for a byte-identical run. Missing data is one `InstructkitError` before any model loads;
* CPU machines: device chosen for the machine (lm-eval defaults to cuda), a fixed batch size (`auto` on CPU probes a
  64 x max_length batch per request type: minutes, gigabytes);
* adapters evaluated as adapters (base + `peft=`), chat template on/off recorded with the numbers;
* the protocol (tasks, shots, chat template, limit, versions, model ids, equivalent CLI command) saved with results.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

import yaml

from instructkit.embedded import ensure_embedded
from instructkit.errors import InstructkitError, close_match
from instructkit.evaluation.fixture import FIXTURE_DIR
from instructkit.evaluation.protocol import FIXTURE, Protocol
from instructkit.evaluation.reports import results_record, save_results

GROUP_PREFIX = "local_"


@contextlib.contextmanager
def kept_rng_state():
    """Global python/numpy/torch(/cuda) RNG states as they were: lm-eval re-seeds them (0/1234/1234) and building
    tasks draws from them, which would change the data order and dropout of the training that follows."""
    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_data_dir(data_dir: str | None) -> Path | None:
    """The benchmark data folder, checked: exists, is a readable folder. 'fixture' = the bundled fixture.

    Also checks that lm-eval is installed (an optional dependency), so both problems show before a model loads.
    """
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise InstructkitError("benchmarks need lm-evaluation-harness, which is not installed.",
                               fix="pip install -e '.[eval]' (lm_eval, rouge_score, sacrebleu).")
    if data_dir is None:
        return None
    if data_dir == FIXTURE:
        return FIXTURE_DIR
    path = Path(data_dir).expanduser().resolve()
    if not path.is_dir():
        raise InstructkitError(f"benchmark data dir {data_dir} does not exist or is not a folder.",
                               fix="point it at local copies laid out like the hub (<dir>/cais/mmlu, "
                                   "<dir>/truthfulqa/truthful_qa), or use 'fixture' for the bundled test data.")
    try:
        next(path.iterdir(), None)
    except OSError as err:
        raise InstructkitError(f"benchmark data dir {data_dir} cannot be read ({err.strerror}).",
                               fix="check its permissions.") from err
    return path


# -- tasks -------------------------------------------------------------------------------------------------------
def task_manager(tasks, include_path: Path | None = None):
    """lm-eval's TaskManager indexing only the built-in folders the requested names live in (instant) instead of all
    ~15k YAML files (8-15 s); falls back to the full index for names outside the usual folder naming."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    builtin = Path(lm_eval.tasks.__file__).parent
    folders = sorted({builtin / name.split("_")[0] for name in tasks if (builtin / name.split("_")[0]).is_dir()})
    extra = [include_path] if include_path else []
    manager = TaskManager(include_path=folders + extra, include_defaults=False)
    if all(_resolvable(manager, name) for name in tasks):
        return manager
    return TaskManager(include_path=extra or None)


def _resolvable(manager, name: str) -> bool:
    """Whether `name` and everything under it is in this (possibly partial) index."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(name)
    if entry is None:
        return False
    if entry.kind == Kind.TAG:
        return all(_resolvable(manager, child) for child in entry.tags)
    if entry.kind == Kind.GROUP:
        return all(_resolvable(manager, c["task"] if isinstance(c, dict) else c) for c in entry.cfg["task"])
    return True


def leaf_tasks(manager, name: str) -> list[str]:
    """The leaf task names under a task, group or tag name."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(name)
    if entry is None:
        match = close_match(name, manager.all_tasks)
        raise InstructkitError(f"{name!r} is not an lm-eval task, group or tag"
                               + (f" — did you mean {match!r}?" if match else "."),
                               fix="use a name from `lm-eval ls tasks` (e.g. mmlu, truthfulqa_mc1, truthfulqa_mc2).")
    if entry.kind == Kind.TAG:
        return sorted(t for child in entry.tags for t in leaf_tasks(manager, child))
    if entry.kind == Kind.GROUP:
        children = [c["task"] if isinstance(c, dict) else c for c in entry.cfg["task"]]
        return [t for child in children for t in leaf_tasks(manager, child)]
    return [name]


def local_configs(dataset_dir: Path) -> set[str] | None:
    """Config names of a local hub-style data set (its README `configs:` block, else its subfolders)."""
    readme = dataset_dir / "README.md"
    if readme.is_file():
        head = readme.read_text(encoding="utf-8").split("---")
        card = yaml.safe_load(head[1]) if len(head) > 2 else None
        if isinstance(card, dict) and card.get("configs"):
            return {c["config_name"] for c in card["configs"]}
    return {p.name for p in dataset_dir.iterdir() if p.is_dir()}


def content_cache_dir(dataset_dir: Path) -> str:
    """A `datasets` cache folder keyed by the local files' names, sizes and mtimes.

    `datasets` keys its cache of a local hub-style folder by path and config only: after the files are replaced, the
    old rows would be evaluated silently (seen here). A key that changes with the files prevents that.
    """
    import hashlib

    import datasets

    stats = sorted((str(p.relative_to(dataset_dir)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in dataset_dir.rglob("*") if p.is_file())
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "instructkit-local" / f"{dataset_dir.name}-{key}")


def local_group(manager, name: str, data_dir: Path) -> dict:
    """A group config referencing the built-in tasks under `name`, each reading `<data_dir>/<its dataset_path>`.

    Only the leaves whose data (dataset folder and config) is present are kept: a fixture with 5 MMLU subjects runs as
    a 5-subject MMLU. The group's own aggregation (MMLU: acc weighted by size) is kept.
    """
    leaves = leaf_tasks(manager, name)  # unknown names fail here, with a suggestion
    entry = manager.task_index[name]
    children, missing = [], set()
    for leaf in leaves:
        cfg = manager.task_index[leaf].cfg or {}
        path, config = cfg.get("dataset_path"), cfg.get("dataset_name")
        local = data_dir / path if path else None
        if local is None or not local.is_dir():
            missing.add(str(local))
            continue
        if config is None or config in (local_configs(local) or ()):
            kwargs = {**(cfg.get("dataset_kwargs") or {}), "cache_dir": content_cache_dir(local)}
            children.append({"task": leaf, "dataset_path": str(local), "dataset_kwargs": kwargs})
    if not children:
        raise InstructkitError(f"no local data for benchmark {name!r} in {data_dir} (looked for "
                               f"{', '.join(sorted(missing)) or 'its configs in the README'}).",
                               fix="copy the hub data set there in the hub layout (README.md with a configs: block "
                                   "plus data files), or choose benchmark_data_dir: fixture for the bundled fixture.")
    group = {"group": GROUP_PREFIX + name, "task": children, "metadata": {"version": 1}}
    aggregate = (entry.cfg or {}).get("aggregate_metric_list") if len(children) > 1 else None
    if aggregate:
        group["aggregate_metric_list"] = aggregate
    return group


@kept_rng_state()
def prepare_tasks(protocol: Protocol, task_dir: Path) -> tuple[list[str], object]:
    """(lm-eval task names to run, TaskManager), after opening every dataset: fails here, before a model loads.

    With a data dir, the group YAMLs are written to `task_dir` (pass it as the CLI's --include_path).
    """
    data_dir = resolve_data_dir(protocol.data_dir)
    manager = task_manager(protocol.tasks)
    names = list(protocol.tasks)
    if data_dir is not None:
        task_dir.mkdir(parents=True, exist_ok=True)
        for name in protocol.tasks:
            group = local_group(manager, name, data_dir)
            (task_dir / f"{group['group']}.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
        names = [GROUP_PREFIX + n for n in protocol.tasks]
        manager = task_manager(protocol.tasks, include_path=task_dir)
    else:
        for name in names:
            leaf_tasks(manager, name)  # unknown names fail with a suggestion
    open_tasks(manager, names)
    return names, manager


@kept_rng_state()
def open_tasks(manager, names: list[str]) -> dict:
    """Build the tasks, which opens their data; every way that fails becomes one InstructkitError."""
    try:
        return manager.load(names)
    except ConnectionError as err:  # datasets: "Couldn't reach 'cais/mmlu' on the Hub (OfflineModeIsEnabled)"
        raise InstructkitError(f"benchmark data is not available offline: {err}.",
                               fix="set benchmark_data_dir (--data_dir) to local copies laid out like the hub "
                                   "(<dir>/cais/mmlu, <dir>/truthfulqa/truthful_qa), or 'fixture'.") from None
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise InstructkitError(f"lm-eval could not build the benchmark tasks {', '.join(names)}: "
                               f"{type(err).__name__}: {err}.",
                               fix="check the local data's schema and splits (MMLU needs test and dev splits even "
                                   "0-shot; TruthfulQA a validation split).") from None


# -- running -----------------------------------------------------------------------------------------------------
def model_args_for(model_dir: str, base: str | None = None, device: str = "cpu") -> dict:
    """lm-eval `hf` model_args for a model folder, or an adapter folder (+ its base: given or from its config)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise InstructkitError(f"model dir {model_dir} does not exist.", fix="pass a saved model or adapter folder.")
    args = {"pretrained": str(path.resolve()), "dtype": "float32" if device == "cpu" else "auto"}
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        base = base or json.loads(adapter.read_text()).get("base_model_name_or_path")
        if base == "embedded" or not base:
            base = str(ensure_embedded().model_dir) if base == "embedded" else None
        if not base or not Path(base).is_dir():
            raise InstructkitError(f"the base model of adapter {model_dir} ({base}) is not a local folder.",
                                   fix="pass --base with the base model folder the adapter was trained on.")
        args.update(pretrained=str(Path(base).resolve()), peft=str(path.resolve()))
        if (path / "tokenizer_config.json").is_file():  # the fine-tuned tokenizer (its chat template, added tokens)
            args["tokenizer"] = str(path.resolve())
    return args


def evaluate(protocol: Protocol, out_dir: Path, model_dir: str | None = None, base: str | None = None,
             model=None, tokenizer=None) -> dict:
    """Run lm-eval on a model/adapter folder or an in-memory model (+ tokenizer); returns the results JSON
    (also saved to `out_dir/benchmarks.json` with a markdown table in `out_dir/benchmarks.md`).

    Global RNG states (python, numpy, torch) and the model's train/eval mode are restored afterwards: lm-eval
    re-seeds globally and switches the model to eval mode.
    """
    import lm_eval
    import lm_eval.utils

    start = time.time()
    out_dir = Path(out_dir)
    device = protocol.device or default_device()
    was_training = model.training if model is not None else None
    with kept_rng_state():
        names, manager = prepare_tasks(protocol, out_dir / "lm_eval_tasks")
        model_args = model_args_for(model_dir, base, device) if model_dir is not None else None
        try:
            if model is not None:
                from lm_eval.models.huggingface import HFLM

                lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=protocol.batch_size)
            else:  # what simple_evaluate(model="hf", model_args=...) and the CLI do, kept to read the chat template
                from lm_eval.api.registry import get_model

                try:
                    lm = get_model("hf").create_from_arg_obj(
                        model_args, {"batch_size": protocol.batch_size, "max_batch_size": None, "device": device})
                except (OSError, ValueError) as err:
                    raise InstructkitError(f"lm-eval could not load {model_dir}: {type(err).__name__}: {err}",
                                           fix="pass a folder saved with save_pretrained (a model, or an adapter "
                                               "whose base loads).") from None
            chat = protocol.apply_chat_template
            template_sha = lm_eval.utils.hash_string(lm.chat_template(True)) if chat else None
            res = lm_eval.simple_evaluate(
                model=lm, tasks=names, num_fewshot=protocol.num_fewshot, batch_size=protocol.batch_size,
                device=device, limit=protocol.limit, log_samples=False, apply_chat_template=chat,
                fewshot_as_multiturn=chat and protocol.fewshot_as_multiturn, task_manager=manager)
        finally:
            if model is not None:
                model.train(was_training)

    res["chat_template_sha"] = template_sha  # as the CLI's results file records it
    report = results_record(res, protocol, names, model_args, model, out_dir, device, time.time() - start)
    save_results(report, out_dir)
    return report
