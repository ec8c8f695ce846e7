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
* the protocol (tasks, shots, chat template, limit, versions, model ids, equivalent CLI command) saved with results;
* lm-eval's per-sample scores (`log_samples`) kept next to the results (`samples.json`), for the paired intervals of
  `evaluation.intervals`;
* the tasks built once (`prepare_tasks`: datasets opened, YAMLs written) and reused by every evaluation of a run:
  several models, or the benchmarks during training;
* on a GPU, lm-eval's `vllm` model type (`backend="vllm"`: tensor / data parallel), the same tasks and numbers' form.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from instructkit.embedded import ensure_embedded
from instructkit.errors import InstructkitError, close_match
from instructkit.evaluation.fixture import FIXTURE_DIR
from instructkit.evaluation.intervals import sample_values
from instructkit.evaluation.protocol import FIXTURE, Protocol
from instructkit.evaluation.reports import results_record, save_results
from instructkit.log import log

GROUP_PREFIX = "local_"
BACKENDS = ("hf", "vllm")
VLLM_INSTALL = "pip install 'instructkit[vllm]' (vllm>=0.18, lm-eval's own floor; on a CUDA machine)"


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


def local_configs(dataset_dir: Path) -> dict[str, dict[str, list[str]] | None]:
    """{config name: {split: its file patterns} (None: not stated)} of a local hub-style data set: its README
    `configs:` block (each config's `data_files`), else its subfolders (splits left to `datasets`). Read once per
    version of the README (MMLU's is read for each of its 57 subjects)."""
    readme = dataset_dir / "README.md"
    return _local_configs(dataset_dir, readme.stat().st_mtime_ns if readme.is_file() else None)


@functools.lru_cache(maxsize=32)
def _local_configs(dataset_dir: Path, _readme_version) -> dict[str, dict[str, list[str]] | None]:
    readme = dataset_dir / "README.md"
    if readme.is_file():
        head = readme.read_text(encoding="utf-8").split("---")
        card = yaml.safe_load(head[1]) if len(head) > 2 else None
        if isinstance(card, dict) and card.get("configs"):
            return {c["config_name"]: _card_splits(c.get("data_files")) for c in card["configs"]}
    return {p.name: None for p in dataset_dir.iterdir() if p.is_dir()}


def _card_splits(data_files) -> dict[str, list[str]] | None:
    def paths(value) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    if isinstance(data_files, list) and all(isinstance(f, dict) and "split" in f for f in data_files):
        return {f["split"]: paths(f.get("path")) for f in data_files}
    if isinstance(data_files, dict):
        return {split: paths(value) for split, value in data_files.items()}
    return {"train": paths(data_files)} if data_files else None  # a bare path or list of paths: the train split


def check_splits(leaf: str, cfg: dict, local: Path, splits: dict[str, list[str]] | None) -> None:
    """The splits the built-in task reads are in the local data, their files present: one clear message, not
    lm-eval's KeyError or datasets' FileNotFoundError."""
    needed = {"its documents": cfg.get("test_split") or cfg.get("validation_split"),
              "its few-shot examples (lm-eval builds them even 0-shot)": cfg.get("fewshot_split")}
    fix = ("add that split's file (and its entry in the README's configs: block, as on the hub); MMLU needs test and "
           "dev (5 few-shot rows per subject) even 0-shot, TruthfulQA a validation split.")
    for role, split in needed.items():
        if splits is None or not split:
            continue
        where = local / cfg["dataset_name"] if cfg.get("dataset_name") else local
        if split not in splits:
            raise InstructkitError(f"benchmark data {where} has no {split!r} split, which {leaf} reads {role}; it "
                                   f"has: {', '.join(sorted(splits)) or 'none'}.", fix=fix)
        if splits[split] and not any(any(local.glob(pattern)) for pattern in splits[split]):
            raise InstructkitError(f"benchmark data {where}: the {split!r} split, which {leaf} reads {role}, is "
                                   f"{', '.join(splits[split])} in {local / 'README.md'}, but no such file exists.",
                                   fix=fix)


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
    children, missing, cache_dirs = [], set(), {}
    for leaf in leaves:
        cfg = manager.task_index[leaf].cfg or {}
        path, config = cfg.get("dataset_path"), cfg.get("dataset_name")
        local = data_dir / path if path else None
        if local is None or not local.is_dir():
            missing.add(str(local))
            continue
        configs = local_configs(local)
        if config is None or config in configs:
            check_splits(leaf, cfg, local, configs.get(config) if config else None)
            if local not in cache_dirs:  # one listing of the files per data set (MMLU: not one per subject)
                cache_dirs[local] = content_cache_dir(local)
            kwargs = {**(cfg.get("dataset_kwargs") or {}), "cache_dir": cache_dirs[local]}
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


@dataclass
class PreparedTasks:
    """What lm-eval runs, built once: the task names, the TaskManager, the loaded Task / Group objects (datasets
    opened) and each group's aggregation ({group: {metric: weight_by_size}}). Reused by every evaluation with the
    same protocol (several models; the benchmarks during training), so the data is opened once."""

    names: list[str]
    manager: object
    loaded: dict = field(repr=False)
    task_dir: Path | None = None
    encodings: dict = field(default_factory=dict, repr=False)  # tokenizer fingerprint -> EncodingCache

    @property
    def objects(self) -> list:
        """The top-level Task / Group objects, as `simple_evaluate(tasks=...)` takes them (no second load)."""
        groups, tasks = self.loaded.get("groups", {}), self.loaded.get("tasks", {})
        return [groups.get(name) or tasks[name] for name in self.names]

    @property
    def aggregation(self) -> dict[str, dict[str, bool]]:
        return {name: {agg.metric: bool(agg.weight_by_size) for agg in group.aggregate_metric_list}
                for name, group in self.loaded.get("groups", {}).items() if group.aggregate_metric_list}


@kept_rng_state()
def prepare_tasks(protocol: Protocol, task_dir: Path) -> PreparedTasks:
    """The tasks to run, after opening every dataset: fails here, before a model loads.

    With a data dir, the group YAMLs are written to `task_dir` (pass it as the CLI's --include_path); each is written
    whole under a temporary name first, so processes preparing the same folder never read half a file.
    """
    import os

    data_dir = resolve_data_dir(protocol.data_dir)
    check_backend(protocol.backend)
    manager = task_manager(protocol.tasks)
    names = list(protocol.tasks)
    if data_dir is not None:
        task_dir.mkdir(parents=True, exist_ok=True)
        for name in protocol.tasks:
            group = local_group(manager, name, data_dir)
            path = task_dir / f"{group['group']}.yaml"
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(yaml.safe_dump(group, sort_keys=False))
            tmp.replace(path)
        names = [GROUP_PREFIX + n for n in protocol.tasks]
        manager = task_manager(protocol.tasks, include_path=task_dir)
    else:
        for name in names:
            leaf_tasks(manager, name)  # unknown names fail with a suggestion
    return PreparedTasks(names, manager, open_tasks(manager, names), task_dir if data_dir is not None else None)


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


# -- models ------------------------------------------------------------------------------------------------------
def check_backend(backend: str) -> None:
    """`hf` always works; `vllm` needs the vllm package (GPU machines): one message naming the install."""
    import importlib.util

    if backend not in BACKENDS:
        raise InstructkitError(f"unknown backend {backend!r}.", fix=f"use one of: {', '.join(BACKENDS)}.")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise InstructkitError("--backend vllm runs lm-eval's vllm model type, but vllm is not installed here.",
                               fix=f"{VLLM_INSTALL}; with --data_parallel_size > 1 also pip install ray. "
                                   "Or evaluate with --backend hf (the default).")


def adapter_base(path: Path, base: str | None) -> tuple[str, dict]:
    """(base model folder, adapter_config) of an adapter folder: --base, else the one its config names."""
    config = json.loads((path / "adapter_config.json").read_text())
    base = base or config.get("base_model_name_or_path")
    if base == "embedded" or not base:
        base = str(ensure_embedded().model_dir) if base == "embedded" else None
    if not base or not Path(base).is_dir():
        raise InstructkitError(f"the base model of adapter {path} ({base}) is not a local folder.",
                               fix="pass --base with the base model folder the adapter was trained on.")
    return str(Path(base).resolve()), config


def model_args_for(model_dir: str, base: str | None = None, device: str = "cpu", backend: str = "hf",
                   tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> dict:
    """lm-eval model_args for a model folder, or an adapter folder (+ its base: given or from its config).

    `hf`: the adapter as `peft=`; `vllm`: as `lora_local_path=` (vLLM applies LoRA itself; `max_lora_rank` from the
    adapter's r), tensor / data parallel sizes passed through, dtype auto (vLLM runs on GPUs only)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise InstructkitError(f"model dir {model_dir} does not exist.", fix="pass a saved model or adapter folder.")
    args = {"pretrained": str(path.resolve()), "dtype": "float32" if device == "cpu" and backend == "hf" else "auto"}
    if (path / "adapter_config.json").is_file():
        pretrained, config = adapter_base(path, base)
        args["pretrained"] = pretrained
        if backend == "vllm":
            args.update(lora_local_path=str(path.resolve()), max_lora_rank=max(16, int(config.get("r") or 16)))
        else:
            args["peft"] = str(path.resolve())
        if (path / "tokenizer_config.json").is_file():  # the fine-tuned tokenizer (its chat template, added tokens)
            args["tokenizer"] = str(path.resolve())
    if backend == "vllm":
        args.update(tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size)
    return args


def load_lm(protocol: Protocol, model_args: dict | None, device: str, model=None, tokenizer=None):
    """lm-eval's LM object: HFLM around an in-memory model, else what `simple_evaluate(model=<backend>,
    model_args=...)` and the CLI build (kept here to read the chat template the numbers were made with)."""
    if model is not None:
        from lm_eval.models.huggingface import HFLM

        return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=protocol.batch_size)
    from lm_eval.api.registry import get_model

    try:
        return get_model(protocol.backend).create_from_arg_obj(
            model_args, {"batch_size": batch_size_for(protocol), "max_batch_size": None, "device": device})
    except (OSError, ValueError) as err:
        raise InstructkitError(f"lm-eval could not load {model_args.get('peft') or model_args['pretrained']}: "
                               f"{type(err).__name__}: {err}",
                               fix="pass a folder saved with save_pretrained (a model, or an adapter whose base "
                                   "loads).") from None


def batch_size_for(protocol: Protocol):
    """vLLM batches continuously (lm-eval's advice: auto); hf gets the fixed size (auto probes for minutes on CPU)."""
    return "auto" if protocol.backend == "vllm" else protocol.batch_size


# -- the same work, less of it ------------------------------------------------------------------------------------
class EncodingCache:
    """Token ids of lm-eval's (context, continuation) pairs, computed by lm-eval's own `_encode_pair`, kept for the
    life of the prepared tasks: the benchmarks during training and every model with the same tokenizer encode the
    same prompts again otherwise. On the embedded default's tokenizer, encoding was the largest cost of an MMLU run
    (105 of 278 s, profiled at 1.8k documents: every 5-shot context is encoded twice per answer choice).

    Within one evaluation the context of a document is encoded once for all its choices (a small cache of the last
    strings encoded); the ids are exactly what lm-eval computes, so the numbers do not change."""

    def __init__(self):
        self.pairs: dict = {}
        self.contexts: dict = {}

    def attach(self, lm) -> None:
        import functools
        from array import array

        encode_pair, tok_encode = lm._encode_pair, lm.tok_encode

        @functools.lru_cache(maxsize=64)
        def recent(string, add_special_tokens, left_truncate_len):
            return tuple(tok_encode(string, add_special_tokens=add_special_tokens,
                                    left_truncate_len=left_truncate_len))

        def cached_tok_encode(string, add_special_tokens=None, left_truncate_len=None, **kwargs):
            if kwargs:
                return tok_encode(string, add_special_tokens=add_special_tokens,
                                  left_truncate_len=left_truncate_len, **kwargs)
            return list(recent(string, add_special_tokens, left_truncate_len))

        def cached_encode_pair(context, continuation):
            hit = self.pairs.get((context, continuation))
            if hit is None:
                ctx, cont = encode_pair(context, continuation)
                if context not in self.contexts:  # the same string always encodes to the same ids
                    self.contexts[context] = array("l", ctx)
                hit = self.pairs[(context, continuation)] = (self.contexts[context], array("l", cont))
            return list(hit[0]), list(hit[1])

        lm.tok_encode, lm._encode_pair = cached_tok_encode, cached_encode_pair


def tokenizer_fingerprint(lm) -> str | None:
    """What decides the token ids: the tokenizer's full definition and lm-eval's BOS setting (None: unknown)."""
    import hashlib

    backend = getattr(getattr(lm, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    blob = backend.to_str() + repr((getattr(lm, "add_bos_token", None), getattr(lm, "prefix_token_id", None)))
    return hashlib.sha256(blob.encode()).hexdigest()


@contextlib.contextmanager
def compiled_templates():
    """Each prompt template compiled once while instructkit's evaluation runs. lm-eval 0.4.13 compiles the Jinja
    template again for every document and field (`utils.apply_template` -> `env.from_string`: 39 of 278 s of the
    profiled MMLU run above); a compiled template renders the same strings, so the prompts do not change."""
    import lm_eval.utils

    env, compiled = lm_eval.utils.env, {}
    original = env.from_string

    def from_string(source, globals=None, template_class=None):  # jinja's own signature
        if globals is not None or template_class is not None:
            return original(source, globals, template_class)
        if source not in compiled:
            compiled[source] = original(source)
        return compiled[source]

    env.from_string = from_string
    try:
        yield
    finally:
        del env.from_string  # the class's method again


@contextlib.contextmanager
def counted_truncations():
    """lm-eval logs one warning per request longer than the model's context ("Truncating N tokens from the
    left"): tens of thousands of lines for MMLU on a short-context model. Counted instead, and said once."""
    import logging

    class Count(logging.Filter):
        n = 0

        def filter(self, record):
            if str(record.msg).startswith("Combined length of context"):
                self.n += 1
                return False
            return True

    logger, counter = logging.getLogger("lm_eval.models.huggingface"), Count()
    logger.addFilter(counter)
    try:
        yield counter
    finally:
        logger.removeFilter(counter)
        if counter.n:
            log(f"benchmarks: {counter.n} requests were longer than the model's context and lm-eval cut them from "
                "the left (it keeps the end of the prompt and the answer)")


# -- running -----------------------------------------------------------------------------------------------------
def evaluate(protocol: Protocol, out_dir: Path, model_dir: str | None = None, base: str | None = None,
             model=None, tokenizer=None, prepared: PreparedTasks | None = None, log_samples: bool = True) -> dict:
    """Run lm-eval on a model/adapter folder or an in-memory model (+ tokenizer); returns the results record
    (also saved to `out_dir/benchmarks.json`, a markdown table in `benchmarks.md` and, with `log_samples`, lm-eval's
    per-sample scores in `samples.json`). `prepared`: the tasks from `prepare_tasks`, reused (else built here).

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
        prepared = prepared or prepare_tasks(protocol, out_dir / "lm_eval_tasks")
        model_args = model_args_for(model_dir, base, device, protocol.backend, protocol.tensor_parallel_size,
                                    protocol.data_parallel_size) if model_dir is not None else None
        try:
            lm = load_lm(protocol, model_args, device, model, tokenizer)
            fingerprint = tokenizer_fingerprint(lm)
            if fingerprint is not None:
                prepared.encodings.setdefault(fingerprint, EncodingCache()).attach(lm)
            chat = protocol.apply_chat_template
            template_sha = lm_eval.utils.hash_string(lm.chat_template(True)) if chat else None
            with compiled_templates(), counted_truncations():
                res = lm_eval.simple_evaluate(
                    model=lm, tasks=prepared.objects, num_fewshot=protocol.num_fewshot,
                    batch_size=batch_size_for(protocol), device=device, limit=protocol.limit,
                    log_samples=log_samples, apply_chat_template=chat,
                    fewshot_as_multiturn=chat and protocol.fewshot_as_multiturn, task_manager=prepared.manager)
        finally:
            if model is not None:
                model.train(was_training)

    res["chat_template_sha"] = template_sha  # as the CLI's results file records it
    report = results_record(res, protocol, prepared, model_args, model, out_dir, device, time.time() - start,
                            log_samples)
    save_results(report, out_dir, sample_values(res["samples"]) if log_samples else None)
    return report
