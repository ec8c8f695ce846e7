"""Benchmark probe: loaded by every Python process started with this folder on PYTHONPATH and IK_BENCH_PROBE set.

It measures any training run the same way, whoever launches it (an instructkit recipe, `trl sft` through
`accelerate launch`, a plain `transformers.Trainer` loop): when `transformers.trainer` is imported, it wraps
`Trainer.training_step` and records, per step, the wall-clock start, the batch's token slots (input_ids.numel()),
its non-pad tokens (attention_mask sum; a padding-free batch has no pad), its trained tokens (labels != -100), the
process's CPU time (all its threads: on a shared machine the work done, whatever else runs) and its peak RSS; after the first backward the parameter / gradient bytes, and at the second step the optimizer
state bytes. At exit it writes IK_BENCH_PROBE/<pid>.json. Nothing is imported or changed without IK_BENCH_PROBE.
"""

import os

if os.environ.get("IK_BENCH_PROBE"):
    import atexit
    import importlib.abc
    import json
    import resource
    import sys
    import threading
    import time

    _T0 = time.time()
    _REC = {"pid": os.getpid(), "argv": sys.argv, "t_start": _T0, "steps": [], "memory": {}}

    def _maxrss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample_training_peak() -> None:
        """Peak RSS from the first step on (loading transients excluded), sampled every 10 ms."""
        while not _REC.get("train_done"):
            _REC["memory"]["training_peak_rss_mb"] = max(_REC["memory"]["training_peak_rss_mb"], _rss_mb())
            time.sleep(0.01)

    def _bytes(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    def _optimizer_bytes(optimizer) -> int:
        import torch

        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
        return _bytes(v for s in inner.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim())

    def _patch(module) -> None:
        _REC["memory"]["runtime_rss_mb"] = _rss_mb()  # torch + transformers imported, no model or data yet
        trainer_cls = module.Trainer
        original = trainer_cls.training_step

        def training_step(self, model, inputs, *args, **kwargs):
            import torch

            if not _REC["steps"]:
                _REC["torch_threads"] = torch.get_num_threads()
                _REC["memory"]["rss_before_training_mb"] = _rss_mb()
                _REC["memory"]["maxrss_before_training_mb"] = _maxrss_mb()
                _REC["memory"]["training_peak_rss_mb"] = 0.0
                threading.Thread(target=_sample_training_peak, daemon=True).start()
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask")
            labels = inputs.get("labels")
            step = {"t": time.time(), "cpu": time.process_time(), "slots": int(ids.numel()),
                    "useful": int(mask.sum()) if mask is not None else int(ids.numel()),
                    "trained": int((labels != -100).sum()) if labels is not None else None,
                    "shape": list(ids.shape)}
            if len(_REC["steps"]) == 1 and self.optimizer is not None:
                _REC["memory"]["optimizer_bytes"] = _optimizer_bytes(self.optimizer)
            out = original(self, model, inputs, *args, **kwargs)
            step["t_end"] = time.time()
            step["maxrss_mb"] = _maxrss_mb()
            step["rss_mb"] = _rss_mb()
            if not _REC["steps"]:
                params = list(self.model.parameters())
                _REC["memory"].update(
                    param_bytes=_bytes(params), grad_bytes=_bytes(p.grad for p in params if p.grad is not None),
                    params=sum(p.numel() for p in params),
                    trainable_params=sum(p.numel() for p in params if p.requires_grad))
            _REC["steps"].append(step)
            return out

        trainer_cls.training_step = training_step
        original_train = trainer_cls.train

        def train(self, *args, **kwargs):
            try:
                return original_train(self, *args, **kwargs)
            finally:
                _REC["train_done"] = True

        trainer_cls.train = train

    class _Finder(importlib.abc.MetaPathFinder):
        """Patch transformers.trainer right after it is first imported (so importing it costs nothing extra)."""

        def find_spec(self, name, path, target=None):
            if name != "transformers.trainer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            sys.meta_path.insert(0, self)
            loader = spec.loader
            exec_module = loader.exec_module

            def patched_exec(module):
                exec_module(module)
                _patch(module)

            loader.exec_module = patched_exec
            return spec

    import importlib.util

    sys.meta_path.insert(0, _Finder())

    @atexit.register
    def _write() -> None:
        if not _REC["steps"]:
            return
        _REC["t_exit"] = time.time()
        _REC["maxrss_exit_mb"] = _maxrss_mb()
        out = os.path.join(os.environ["IK_BENCH_PROBE"], f"{os.getpid()}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(_REC, f)
