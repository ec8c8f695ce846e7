"""Data preparation of one data file as a recipe does it, timed (wall and CPU seconds) and with memory: instructkit reads, validates and
converts the rows (`Run.load_data`), then TRL tokenizes and masks them (`SFTTrainer.__init__`).

    python benchmarks/scale_prep.py MODEL_DIR DATA_JSONL [RECIPE ARGS...]   # prints one JSON line

`dataset_num_proc` is resolved as a recipe resolves it (unset: the usable cores, capped by the rows); pass
`--dataset_num_proc 1` for one process.
"""

import gc
import json
import resource
import sys
import time


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def status_mb(field: str) -> float:
    """A /proc/self/status memory line in MB: RssAnon (heap, what the process holds) or RssFile (mapped file pages,
    e.g. memory-mapped Arrow data, which the kernel drops and re-reads as it needs)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    model_dir, data, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    from trl import SFTTrainer

    from instructkit.config.resolved import resolve_data_processes
    from instructkit.modeling.loading import load_model, load_tokenizer
    from instructkit.training.sft import load_sft_data, parse_sft_config, resolve_sft

    out = {"rss_after_imports_mb": rss_mb()}
    config = parse_sft_config(["--model_name_or_path", model_dir, "--dataset_name", data, "--output_dir", "/tmp/ik-scale",
                               "--test_split_size", "0", "--max_length", "128", "--eval_exact_match", "false",
                               "--report_to", "none", *extra], check_output=False)
    t, c = time.time(), time.process_time()
    loaded = load_sft_data(config)
    dataset = loaded.splits
    out.update(load_s=time.time() - t, load_cpu_s=time.process_time() - c, rss_after_load_mb=rss_mb(),
               peak_after_load_mb=peak_mb(),
               rows=len(dataset["train"]))
    tokenizer, _ = load_tokenizer(config)
    config = resolve_data_processes(resolve_sft(config, loaded.report, tokenizer), out["rows"])
    out["dataset_num_proc"] = config.training.dataset_num_proc or 1
    model = load_model(config, tokenizer)
    t, c = time.time(), time.process_time()
    trainer = SFTTrainer(model=model, args=config.training, processing_class=tokenizer, train_dataset=dataset["train"])
    out.update(tokenize_s=time.time() - t, tokenize_cpu_s=time.process_time() - c, rss_after_tokenize_mb=rss_mb(),
               peak_mb=peak_mb(),
               tokenized_rows=len(trainer.train_dataset),
               tokens=sum(len(ids) for batch in trainer.train_dataset.select_columns(["input_ids"]).iter(1000)
                          for ids in batch["input_ids"]),
               in_memory=all(not d.cache_files for d in [dataset["train"], trainer.train_dataset]))
    del dataset, loaded
    gc.collect()
    out["rss_steady_mb"] = rss_mb()  # what training runs with: rows and tokens memory-mapped, Python lists freed
    out["anon_steady_mb"], out["file_steady_mb"] = status_mb("RssAnon"), status_mb("RssFile")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
