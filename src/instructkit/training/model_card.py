"""The model card (`README.md`) of a run: what was trained from what, on what, how long, and how well.

Written from the files a run saves (`config.yaml`, `metrics.json`, `adapter_config.json`, `samples.jsonl`,
`training_curves.png`), so it says exactly what those say and can be rewritten for any finished run. Replaces the
placeholder card PEFT writes next to an adapter. Hub metadata (front matter) via `huggingface_hub.ModelCardData`;
names that are local paths are kept out of it (the Hub wants ids there) but appear in the text.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from instructkit.data.sources import DATA_SUFFIXES
from instructkit.log import log
from instructkit.paths import looks_like_local_path, write_atomic
from instructkit.training.outputs import CONFIG_FILE, METRICS_FILE, SAMPLES_FILE

CARD_FILE = "README.md"
METHOD_TAGS = {"SFTTrainer": "sft", "DPOTrainer": "dpo"}


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _table(header: list[str], rows: list[list]) -> str:
    if not rows:
        return ""
    cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"  # noqa: E731
    return "\n".join([cells(header), "|" + "---|" * len(header), *map(cells, rows)])


def _hub_id(name) -> str | None:
    """A hub id (org/name) for the metadata; local paths and 'embedded' are not ids."""
    if not isinstance(name, str) or name == "embedded" or Path(name).expanduser().exists() \
            or looks_like_local_path(name, DATA_SUFFIXES):
        return None
    return name


def _num(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def last_samples(out: Path) -> list[dict]:
    """The sample generations of the last step in `samples.jsonl` (see `training.callbacks`)."""
    path = out / SAMPLES_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [r for r in rows if r["step"] == rows[-1]["step"]] if rows else []


class RunFiles:
    """What a run's output dir says about it, read once: its config, metrics, adapter and merge records."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.config = yaml.safe_load((self.out / CONFIG_FILE).read_text()) if (self.out / CONFIG_FILE).is_file() else {}
        self.metrics = _read_json(self.out / METRICS_FILE) or {}
        self.adapter = _read_json(self.out / "adapter_config.json")
        self.merged = _read_json(self.out / "merge.json")  # written by `instructkit merge` (modeling.merging)
        self.base = self.config.get("model_name_or_path", "?")
        self.resolved_base = (self.adapter or {}).get("base_model_name_or_path") or (self.merged or {}).get("base")
        self.data_name = self.config.get("dataset_name") if not self.config.get("dataset_mixture") else None
        self.quantized = bool(self.config.get("load_in_4bit") or self.config.get("load_in_8bit"))
        self.trainer = self.metrics.get("trainer", "SFTTrainer")

    @property
    def kind(self) -> str:
        lora = "QLoRA" if self.quantized else "LoRA"
        if self.merged:
            return f"full model (a {lora} adapter merged into its {self.merged['dtype']} base)"
        return f"{lora} adapter" if self.adapter else "full model"

    @property
    def data_text(self) -> str:
        if not self.data_name:
            return "a mixture of data sets (below)"
        return "the embedded default's instruction data" if self.data_name == "embedded" else f"`{self.data_name}`"


def _front_matter(run: RunFiles) -> str:
    from huggingface_hub import ModelCardData

    tags = ["instructkit", "trl", METHOD_TAGS.get(run.trainer, "sft")] + (["lora"] if run.adapter else []) \
        + (["qlora"] if run.quantized and run.adapter else [])
    meta = ModelCardData(
        base_model=_hub_id(run.base) or _hub_id(run.resolved_base), library_name="peft" if run.adapter else
        "transformers", datasets=[d for d in [_hub_id(run.data_name)] if d] or None, pipeline_tag="text-generation",
        tags=tags)
    return f"---\n{meta.to_yaml()}\n---\n"


def _summary(run: RunFiles) -> str:
    base = "the embedded default (a tiny Llama built locally by instructkit)" if run.base == "embedded" else \
        f"`{run.base}`"
    return (f"A {run.kind} fine-tuned from {base} on {run.data_text} with instructkit's "
            f"`{run.metrics.get('recipe', '?')}` recipe (TRL `{run.trainer}`).\n")


def _use_it(run: RunFiles) -> str:
    out = run.out
    use = [f"instructkit chat {out}", f"instructkit generate {out} --input prompts.jsonl --output answers.jsonl",
           f"instructkit serve {out}"]
    if run.adapter:
        use.insert(0, f"instructkit merge {out} {out}-merged   # adapter + base -> one full-precision model")
    return "## Use it\n\n```bash\n" + "\n".join(use) + "\n```\n"


def _base_model(run: RunFiles) -> str:
    lines = [f"- `model_name_or_path`: `{run.base}`" + (f" (resolved: `{run.resolved_base}`)" if run.resolved_base
                                                        and run.resolved_base != run.base else "")]
    if run.adapter:
        targets = run.adapter.get("target_modules")
        targets = ", ".join(sorted({t.rsplit(".", 1)[-1] for t in targets})) if isinstance(targets, list) else targets
        lines.append(f"- LoRA: r={run.adapter.get('r')}, alpha={run.adapter.get('lora_alpha')}, dropout="
                     f"{run.adapter.get('lora_dropout')}, on {targets}")
    if run.quantized and (run.adapter or run.merged):
        lines.append("- trained on a 4-bit NF4 base (QLoRA); " + ("merged into the full-precision base" if run.merged
                     else "merge it into the full-precision base (`instructkit merge` does)")
                     + ", never into 4-bit weights")
    if run.merged:
        check = run.merged["check"]
        lines.append(f"- merged from `{run.merged['adapter']}` in {run.merged['dtype']}: max |logit difference| "
                     f"against the unmerged adapter {check['max_abs_logit_diff']:.3g} over {check['tokens']} tokens "
                     f"(logits up to {check['max_abs_logit']:.3g})")
    if run.config.get("chat_template"):
        lines.append(f"- chat template: `{run.config['chat_template']}` (saved with the tokenizer)")
    return "## Base model\n\n" + "\n".join(lines) + "\n"


def _data(run: RunFiles) -> str:
    report = run.metrics.get("data") or {}
    lines = [f"- source: {run.data_text}, format {report.get('format', run.config.get('dataset_format', '?'))}"]
    for m in report.get("mixture") or []:
        lines.append(f"- mixture: `{m.get('path')}` ({m.get('format')}): {m.get('used')} of {m.get('rows')} rows "
                     f"(weight {m.get('weight')})")
    if report.get("rows"):
        lines.append("- rows: " + ", ".join(f"{k} {v:,}" for k, v in report["rows"].items()))
    if report.get("skipped"):
        lines.append("- skipped: " + ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()))
    if report.get("truncated"):
        lines.append(f"- truncated to max_length={run.config.get('max_length')}: {report['truncated']} rows")
    return "## Data\n\n" + "\n".join(lines) + "\n"


def _training(run: RunFiles) -> str:
    config, metrics = run.config, run.metrics
    train, history, machine = metrics.get("train") or {}, metrics.get("log_history") or [], metrics.get("machine") or {}
    losses = [e["loss"] for e in history if isinstance(e.get("loss"), (int, float))]
    rows = [["optimizer steps", max((e.get("step", 0) for e in history), default=0)],
            ["epochs", _num(train.get("epoch"))],
            ["final training loss (mean over the run)", _num(train.get("train_loss"))],
            ["last logged loss", _num(losses[-1]) if losses else "—"],
            ["learning rate", f"{config.get('learning_rate')} ({config.get('lr_scheduler_type')})"],
            ["batch size per device × accumulation × processes",
             f"{config.get('per_device_train_batch_size')} × {config.get('gradient_accumulation_steps')} × "
             f"{machine.get('processes', 1)}"],
            ["max_length", config.get("max_length")],
            ["training time", f"{train.get('train_runtime', '?')} s (whole run {metrics.get('seconds', '?')} s)"],
            ["machine", ", ".join(f"{k} {v}" for k, v in machine.items())]]
    curves = "![training curves](training_curves.png)\n" if (run.out / "training_curves.png").is_file() else ""
    return "## Training\n\n" + _table(["", ""], rows) + "\n" + ("\n" + curves if curves else "")


def _results(run: RunFiles) -> str:
    metrics, results = run.metrics, []
    em = metrics.get("exact_match") or {}
    before, after = em.get("before") or {}, em.get("after") or {}
    em_rows = [[split, f"{before[split]['exact_match']:.1%}" if split in before else "—",
                f"{r['exact_match']:.1%}", f"{r['stopped']:.0%}", r["n"]] for split, r in after.items()]
    if em_rows:
        results.append("Held-out exact match (greedy, through the chat template; the answer must equal the target "
                       "and end the turn):\n\n" + _table(["split", "before", "after", "stopped", "n"], em_rows))
    if metrics.get("generation_metrics"):
        results.append("Generation metrics after training:\n\n" + _table(
            ["split", "perplexity", "exact match", "ROUGE-L", "BLEU", "n"],
            [[s, _num(r["perplexity"]), f"{r['exact_match']:.1%}", _num(r["rouge_l"], 3), _num(r["bleu"], 3), r["n"]]
             for s, r in metrics["generation_metrics"].items()]))
    if metrics.get("eval"):
        results.append("Held-out evaluation after training:\n\n" + _table(
            ["metric", "value"], [[k.removeprefix("eval_"), _num(v)] for k, v in metrics["eval"].items()
                                  if isinstance(v, (int, float)) and not k.endswith(("_runtime", "_per_second"))]))
    if (metrics.get("benchmarks") or {}).get("scores"):
        results.append(_benchmarks(run, metrics["benchmarks"]))
    return "## Results\n\n" + ("\n\n".join(results) if results else "No evaluation was run.") + "\n"


def _benchmarks(run: RunFiles, bench: dict) -> str:
    """The benchmark scores; with the before-training run, before / after / delta with its paired 95 % interval and
    the before/after picture."""
    protocol = bench.get("protocol") or {}
    head = (f"Benchmarks (lm-evaluation-harness, {protocol.get('num_fewshot')}-shot, chat template "
            f"{'on' if protocol.get('apply_chat_template') else 'off'}, limit {protocol.get('limit')})")
    before, deltas = bench.get("before"), bench.get("deltas")
    if not before or deltas is None:
        return head + ":\n\n" + _table(["task / metric", "score"], [[k, _num(v)] for k, v in bench["scores"].items()])
    rows = []
    for key, after in bench["scores"].items():
        found = deltas.get(key.replace("/", "|", 1)) or {}
        ci = f"[{found['low']:+.4f}, {found['high']:+.4f}]" if "low" in found else found.get("note", "")
        rows.append([key, _num(before.get(key, "—")), _num(after),
                     f"{after - before[key]:+.4f}" if key in before else "—", ci,
                     ("**yes**" if found["excludes_zero"] else "no") if "low" in found else ""])
    picture = "benchmarks/compare.png"
    return (head + f", before and after training. {bench.get('method', '')}\n\n"
            + _table(["task / metric", "before", "after", "Δ", "95 % CI", "excludes 0"], rows)
            + (f"\n\n![benchmarks before and after training]({picture})" if (run.out / picture).is_file() else "")
            + f"\n\nDetails: [{bench.get('compare', 'benchmarks/compare.md')}]"
              f"({bench.get('compare', 'benchmarks/compare.md')})")


def _samples(run: RunFiles) -> str:
    samples = last_samples(run.out)
    if not samples:
        return ""
    return f"## Sample generations (step {samples[0]['step']}, greedy)\n\n" + _table(
        ["prompt", "answer", "target"],
        [[s["prompt"], s["text"] + ("" if s["stopped"] else " …(no end of turn)"), s.get("target") or ""]
         for s in samples]) + "\n"


def _resolved_config(run: RunFiles) -> str:
    if not run.config:
        return ""
    return ("## Resolved config\n\n<details><summary>config.yaml: every setting of this run (credentials "
            "redacted)</summary>\n\n```yaml\n" + yaml.safe_dump(run.config, sort_keys=True) + "```\n\n</details>\n")


def card_text(out: Path) -> str:
    """The card's markdown, metadata included."""
    run = RunFiles(out)
    parts = [_front_matter(run), f"# {run.out.name}\n", _summary(run), _use_it(run), _base_model(run), _data(run),
             _training(run), _results(run), _samples(run), _resolved_config(run)]
    return "\n".join(part for part in parts if part)


def write_model_card(out_dir: Path) -> Path:
    """Write `<out_dir>/README.md` (the model card)."""
    from huggingface_hub import ModelCard

    path = write_atomic(Path(out_dir) / CARD_FILE, str(ModelCard(card_text(Path(out_dir)))))
    log(f"model card: {path}")
    return path
