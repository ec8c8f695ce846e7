"""The embedded default: a tiny pretrained model, its tokenizer and an instruction data set, built locally.

`model_name_or_path: embedded` and `dataset_name: embedded` in any recipe config resolve here. The first
use builds everything from the seed (a few minutes on a 2-core CPU, mostly pretraining) and caches it;
every later run, in any process, reuses the cache. Concurrent processes (e.g. `accelerate launch
--num_processes 2`) wait on a file lock while one of them builds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from instructkit.embedded import world as W
from instructkit.embedded.build import EmbeddedSpec, build, cache_root
from instructkit.errors import InstructkitError

# Presets: "default" is what recipes use; "test" is a seconds-long build for the test suite (same code path,
# far less pretraining), selected with INSTRUCTKIT_EMBEDDED=test.
PRESETS = {
    "default": EmbeddedSpec(),
    "test": EmbeddedSpec(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, n_train=400, n_test=45, n_test_phrasings=18, pretrain_facts=256),
}


@dataclass(frozen=True)
class EmbeddedAssets:
    root: Path

    @property
    def model_dir(self) -> Path:
        """Pretrained base model with its tokenizer and ChatML chat template."""
        return self.root / "base"

    @property
    def data_dir(self) -> Path:
        """train.jsonl, test.jsonl (unseen arguments), test_phrasings.jsonl (unseen phrasings)."""
        return self.root / "data"

    @property
    def preference_dir(self) -> Path:
        """train.jsonl, test.jsonl: preference pairs from the same world (`ensure_preference_data` writes them)."""
        return self.root / "preference"

    @property
    def prose_file(self) -> Path:
        """The base's pretraining prose, one statement per line (`ensure_prose` writes it)."""
        return self.root / "prose" / "pretraining.txt"

    @property
    def info(self) -> dict:
        return json.loads((self.root / "BUILD.json").read_text())


def current_spec() -> EmbeddedSpec:
    name = os.environ.get("INSTRUCTKIT_EMBEDDED", "default")
    if name not in PRESETS:
        raise InstructkitError(f"INSTRUCTKIT_EMBEDDED={name!r} is not a preset of the embedded default.",
                               fix=f"use one of: {', '.join(PRESETS)}.")
    return PRESETS[name]


def ensure_embedded(spec: EmbeddedSpec | None = None) -> EmbeddedAssets:
    """Return the cached build of the current preset, building it first (in a clean child process) if needed.

    The build trains a model, so it never runs inside a recipe's process: it would reset that process's
    accelerate state and, under several processes, block on TRL's barriers while the other rank waits on
    the lock. The child sees no distributed environment and no GPU, so the build is the same everywhere.
    """
    import subprocess

    spec = spec or current_spec()
    assets = EmbeddedAssets(cache_root() / f"embedded-{spec.key()}")
    if (assets.root / "BUILD.json").exists():
        return assets
    # no distributed variables, and not accelerate's OMP_NUM_THREADS=1: the build uses every core
    dist = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
            "OMP_NUM_THREADS"}
    env = {k: v for k, v in os.environ.items() if k not in dist and not k.startswith("ACCELERATE_")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run([sys.executable, "-m", "instructkit.embedded"], env=env)
    if done.returncode != 0 or not (assets.root / "BUILD.json").exists():
        raise InstructkitError(f"building the embedded default into {assets.root} failed (exit {done.returncode}).",
                               fix="see the output above; INSTRUCTKIT_CACHE chooses another cache folder.")
    return assets


def build_cached(spec: EmbeddedSpec | None = None) -> EmbeddedAssets:
    """Build `spec` into the cache in this process unless it is there; concurrent callers wait on a lock."""
    from filelock import FileLock

    spec = spec or current_spec()
    root = cache_root() / f"embedded-{spec.key()}"
    assets = EmbeddedAssets(root)
    if (root / "BUILD.json").exists():
        return assets
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if (root / "BUILD.json").exists():  # another process built it while we waited
            return assets
        tmp = root.with_name(root.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"[instructkit] building the embedded default into {root} (first use only; cached afterwards)",
              file=sys.stderr, flush=True)
        build(spec, tmp)
        tmp.rename(root)  # atomic: a killed build never leaves a half-written cache behind
    return assets


def ensure_preference_data(spec: EmbeddedSpec | None = None) -> Path:
    """The embedded preference data (for DPO), generated next to the cached build on first use (about a second).

    Same world and seed as the SFT data: training pairs never use a held-out argument; `test` uses only
    held-out arguments.
    """
    from filelock import FileLock

    spec = spec or current_spec()
    out = ensure_embedded(spec).preference_dir
    if (out / "test.jsonl").exists():
        return out
    with FileLock(str(out) + ".lock"):
        if (out / "test.jsonl").exists():
            return out
        world = W.World(spec.seed)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", spec.n_train // 3), ("test", spec.n_test)):
            rows = W.preference_rows(world, n, spec.seed, split)
            (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def ensure_prose(spec: EmbeddedSpec | None = None) -> Path:
    """The embedded base's pretraining prose as a text corpus, one statement per line ("zeka means gravel."): the
    statements it was pretrained on, in that order, for general-text replay during SFT (`path: embedded_prose` in a
    dataset_mixture). Written next to the cached build on first use."""
    from filelock import FileLock

    spec = spec or current_spec()
    path = ensure_embedded(spec).prose_file
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            facts = W.pretraining_facts(W.World(spec.seed), spec.pretrain_facts, spec.seed)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_text("".join(f["prompt"] + f["completion"] + "\n" for f in facts))
            tmp.rename(path)
    return path
