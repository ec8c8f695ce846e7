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

CARD_FILE = "README.md"
_TRAINERS = {"dpo": "DPOTrainer"}  # every other recipe trains with SFTTrainer


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _table(header: list[str], rows: list[list]) -> str:
    if not rows:
        return ""
    cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"  # noqa: E731
    return "\n".join([cells(header), "|" + "---|" * len(header), *map(cells, rows)])


def _hub_id(name) -> str | None:
    """A hub id (org/name) for the metadata; local paths and 'embedded' are not ids."""
    from instructkit.data import DATA_SUFFIXES
    from instructkit.paths import looks_like_local_path

    if not isinstance(name, str) or name == "embedded" or Path(name).expanduser().exists() \
            or looks_like_local_path(name, DATA_SUFFIXES):
        return None
    return name


def _num(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def last_samples(out: Path) -> list[dict]:
    """The sample generations of the last step in `samples.jsonl` (see `instructkit.callbacks`)."""
    from instructkit.callbacks import SAMPLES_FILE

    path = out / SAMPLES_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [r for r in rows if r["step"] == rows[-1]["step"]] if rows else []


def card_text(out: Path) -> str:
    """The card's markdown, metadata included."""
    from huggingface_hub import ModelCardData

    out = Path(out)
    config = yaml.safe_load((out / "config.yaml").read_text()) if (out / "config.yaml").is_file() else {}
    metrics = _read_json(out / "metrics.json") or {}
    adapter = _read_json(out / "adapter_config.json")
    merged = _read_json(out / "merge.json")  # written by `instructkit merge` (see instructkit.merging)
    recipe = metrics.get("recipe", "?")
    trainer = _TRAINERS.get(recipe, "SFTTrainer")
    base = config.get("model_name_or_path", "?")
    resolved_base = (adapter or {}).get("base_model_name_or_path") or (merged or {}).get("base")
    data_name = config.get("dataset_name") if not config.get("dataset_mixture") else None
    quantized = bool(config.get("load_in_4bit") or config.get("load_in_8bit"))
    kind = ("QLoRA adapter" if quantized else "LoRA adapter") if adapter else "full model"
    if merged:
        kind = f"full model (a {'QLoRA' if quantized else 'LoRA'} adapter merged into its {merged['dtype']} base)"
    method = "dpo" if recipe == "dpo" else "sft"

    meta = ModelCardData(
        base_model=_hub_id(base) or _hub_id(resolved_base), library_name="peft" if adapter else "transformers",
        datasets=[d for d in [_hub_id(data_name)] if d] or None, pipeline_tag="text-generation",
        tags=["instructkit", "trl", method] + (["lora"] if adapter else []) + (["qlora"] if quantized and adapter else []),
    )
    parts = [f"---\n{meta.to_yaml()}\n---\n", f"# {out.name}\n"]
    base_text = "the embedded default (a tiny Llama built locally by instructkit)" if base == "embedded" else f"`{base}`"
    data_text = ("the embedded default's instruction data" if data_name == "embedded" else f"`{data_name}`") \
        if data_name else "a mixture of data sets (below)"
    parts.append(f"A {kind} fine-tuned from {base_text} on {data_text} with instructkit's `{recipe}` recipe "
                 f"(TRL `{trainer}`).\n")

    # Use it
    use = [f"instructkit chat {out}", f"instructkit generate {out} --input prompts.jsonl --output answers.jsonl",
           f"instructkit serve {out}"]
    if adapter:
        use.insert(0, f"instructkit merge {out} {out}-merged   # adapter + base -> one full-precision model")
    parts.append("## Use it\n\n```bash\n" + "\n".join(use) + "\n```\n")

    # Base model
    lines = [f"- `model_name_or_path`: `{base}`" + (f" (resolved: `{resolved_base}`)" if resolved_base
                                                    and resolved_base != base else "")]
    if adapter:
        targets = adapter.get("target_modules")
        targets = ", ".join(sorted({t.rsplit(".", 1)[-1] for t in targets})) if isinstance(targets, list) else targets
        lines.append(f"- LoRA: r={adapter.get('r')}, alpha={adapter.get('lora_alpha')}, dropout="
                     f"{adapter.get('lora_dropout')}, on {targets}")
    if quantized and (adapter or merged):
        lines.append("- trained on a 4-bit NF4 base (QLoRA); " + ("merged into the full-precision base" if merged else
                     "merge it into the full-precision base (`instructkit merge` does)") + ", never into 4-bit weights")
    if merged:
        check = merged["check"]
        lines.append(f"- merged from `{merged['adapter']}` in {merged['dtype']}: max |logit difference| against the "
                     f"unmerged adapter {check['max_abs_logit_diff']:.3g} over {check['tokens']} tokens "
                     f"(logits up to {check['max_abs_logit']:.3g})")
    if config.get("chat_template"):
        lines.append(f"- chat template: `{config['chat_template']}` (saved with the tokenizer)")
    parts.append("## Base model\n\n" + "\n".join(lines) + "\n")

    # Data
    report = metrics.get("data") or {}
    lines = [f"- source: {data_text}, format {report.get('format', config.get('dataset_format', '?'))}"]
    for m in report.get("mixture") or []:
        lines.append(f"- mixture: `{m.get('path')}` ({m.get('format')}): {m.get('used')} of {m.get('rows')} rows "
                     f"(weight {m.get('weight')})")
    if report.get("rows"):
        lines.append("- rows: " + ", ".join(f"{k} {v:,}" for k, v in report["rows"].items()))
    if report.get("skipped"):
        lines.append("- skipped: " + ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()))
    if report.get("truncated"):
        lines.append(f"- truncated to max_length={config.get('max_length')}: {report['truncated']} rows")
    parts.append("## Data\n\n" + "\n".join(lines) + "\n")

    # Training
    train = metrics.get("train") or {}
    history = metrics.get("log_history") or []
    steps = max((e.get("step", 0) for e in history), default=0)
    losses = [e["loss"] for e in history if isinstance(e.get("loss"), (int, float))]
    machine = metrics.get("machine") or {}
    rows = [["optimizer steps", steps], ["epochs", _num(train.get("epoch"))],
            ["final training loss (mean over the run)", _num(train.get("train_loss"))],
            ["last logged loss", _num(losses[-1]) if losses else "—"],
            ["learning rate", f"{config.get('learning_rate')} ({config.get('lr_scheduler_type')})"],
            ["batch size per device × accumulation × processes",
             f"{config.get('per_device_train_batch_size')} × {config.get('gradient_accumulation_steps')} × "
             f"{machine.get('processes', 1)}"],
            ["max_length", config.get("max_length")],
            ["training time", f"{train.get('train_runtime', '?')} s (whole run {metrics.get('seconds', '?')} s)"],
            ["machine", ", ".join(f"{k} {v}" for k, v in machine.items())]]
    parts.append("## Training\n\n" + _table(["", ""], rows) + "\n")
    if (out / "training_curves.png").is_file():
        parts.append("![training curves](training_curves.png)\n")

    # Results
    results = []
    em = metrics.get("exact_match") or {}
    before, after = em.get("before") or {}, em.get("after") or {}
    em_rows = [[split, f"{before[split]['exact_match']:.1%}" if split in before else "—",
                f"{r['exact_match']:.1%}", f"{r['stopped']:.0%}", r["n"]] for split, r in after.items()]
    if em_rows:
        results.append("Held-out exact match (greedy, through the chat template; the answer must equal the target "
                       "and end the turn):\n\n" + _table(["split", "before", "after", "stopped", "n"], em_rows))
    gm = metrics.get("generation_metrics") or {}
    if gm:
        results.append("Generation metrics after training:\n\n" + _table(
            ["split", "perplexity", "exact match", "ROUGE-L", "BLEU", "n"],
            [[s, _num(r["perplexity"]), f"{r['exact_match']:.1%}", _num(r["rouge_l"], 3), _num(r["bleu"], 3), r["n"]]
             for s, r in gm.items()]))
    if metrics.get("eval"):
        results.append("Held-out evaluation after training:\n\n" + _table(
            ["metric", "value"], [[k.removeprefix("eval_"), _num(v)] for k, v in metrics["eval"].items()
                                  if isinstance(v, (int, float)) and not k.endswith(("_runtime", "_per_second"))]))
    bench = metrics.get("benchmarks") or {}
    if bench.get("scores"):
        protocol = bench.get("protocol") or {}
        results.append(f"Benchmarks (lm-evaluation-harness, {protocol.get('num_fewshot')}-shot, chat template "
                       f"{'on' if protocol.get('apply_chat_template') else 'off'}, limit {protocol.get('limit')}):\n\n"
                       + _table(["task / metric", "score"], [[k, _num(v)] for k, v in bench["scores"].items()]))
    parts.append("## Results\n\n" + ("\n\n".join(results) if results else "No evaluation was run.") + "\n")

    samples = last_samples(out)
    if samples:
        parts.append(f"## Sample generations (step {samples[0]['step']}, greedy)\n\n" + _table(
            ["prompt", "answer", "target"],
            [[s["prompt"], s["text"] + ("" if s["stopped"] else " …(no end of turn)"), s.get("target") or ""]
             for s in samples]) + "\n")

    if config:
        parts.append("## Resolved config\n\n<details><summary>config.yaml: every setting of this run (credentials "
                     "redacted)</summary>\n\n```yaml\n" + yaml.safe_dump(config, sort_keys=True) + "```\n\n</details>\n")
    return "\n".join(parts)


def write_model_card(out_dir: Path) -> Path:
    """Write `<out_dir>/README.md` (the model card)."""
    from huggingface_hub import ModelCard

    from instructkit.runs import log

    path = Path(out_dir) / CARD_FILE
    ModelCard(card_text(Path(out_dir))).save(path)
    log(f"model card: {path}")
    return path
