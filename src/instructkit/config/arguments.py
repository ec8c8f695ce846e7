"""instructkit's own recipe arguments, next to TRL's `SFTConfig` / `DPOConfig` / `ModelConfig`."""

import dataclasses
import typing

from instructkit.errors import InstructkitError

DEFAULT_TASKS = ("mmlu", "truthfulqa_mc1", "truthfulqa_mc2")  # MMLU 5-shot, TruthfulQA mc1 + mc2 0-shot


@dataclasses.dataclass
class InstructkitArguments:
    """Script-level arguments shared by all recipes (the model and trainer ones come from TRL)."""

    dataset_name: str = dataclasses.field(
        default="embedded",
        metadata={
            "help": "'embedded' (the project's generated data set), a local .json/.jsonl/.csv/.tsv/.parquet file (JSON and "
            "CSV also as .gz/.bz2/.xz/.zst) or a folder of them, or a Hugging Face Hub dataset name."
        },
    )
    dataset_mixture: list[dict] | None = dataclasses.field(
        default=None,
        metadata={
            "help": "YAML only. Several data sets mixed into one training set (replaces dataset_name): a list of "
            "{path, config, split, data_dir, data_files, format, columns, weight | fraction}; the alignment-handbook's "
            "{datasets: [{id, config, split, columns, weight}], seed, test_split_size} and TRL's top-level "
            "datasets: [{path, name, ...}] are read as written. weight = the share of that data set's rows used, a "
            "seeded sample: 1.0 all rows once (the default), 0.5 a seeded half, 2.0 every row twice. fraction (TRL) "
            "= its target share of the mixture, none oversampled. columns: a list keeps those columns, a mapping "
            "renames them ({their_name: our_name}). The held-out split is test_split_size of the mixed rows."
        },
    )
    csv_delimiter: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Separator of .csv / .tsv data files (one character, or 'tab'); default: a tab for .tsv, else "
                          "the one of , ; tab | that splits the header line into the most columns."},
    )
    dataset_mixture_seed: int | None = dataclasses.field(
        default=None, metadata={"help": "Seed of the mixture's sampling, shuffle and held-out split (the "
                                        "alignment-handbook's dataset_mixture.seed); default: seed."})
    dataset_config: str | None = dataclasses.field(
        default=None, metadata={"help": "Dataset configuration (subset) name, for hub datasets that have several."}
    )
    dataset_train_split: str = dataclasses.field(default="train", metadata={"help": "Split used for training."})
    dataset_test_split: str = dataclasses.field(
        default="test", metadata={"help": "Split used for evaluation; held out from training."}
    )
    dataset_format: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "Row format of the data set; 'auto' detects it from the columns.",
            "choices": ["auto", "alpaca", "prompt_completion", "messages", "sharegpt", "text", "preference"],
        },
    )
    tokenizer_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Tokenizer to load; defaults to the model path."}
    )
    chat_template: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "A bundled chat template (alpaca, chatml, gemma, llama3, llama3_1_tools, mistral, qwen2_5, "
            "qwen2_5_tools, zephyr; *_tools render tool calls) or a path to a .jinja file; replaces the tokenizer's "
            "own template. Control tokens the bundled template needs are added "
            "to the tokenizer, and their embeddings are trained (also under LoRA)."
        },
    )
    assistant_masks: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "How conversations are trained on their assistant turns only: 'template' = the chat template's "
            "{% generation %} markers, or TRL's training variant of a stock template it knows (TRL tokenizes); "
            "'prefix' = instructkit finds each turn by rendering prefixes of the conversation with the tokenizer's "
            "own template and hands TRL input_ids + assistant_masks; 'auto' = 'template' when the template has "
            "markers or TRL's variant trains exactly each answer and its end-of-turn token, else 'prefix'. "
            "config.yaml records the choice.",
            "choices": ["auto", "template", "prefix"],
        },
    )
    on_bad_rows: str = dataclasses.field(
        default="error",
        metadata={
            "help": "What to do with malformed data rows: 'error' stops with the row number, 'skip' drops them "
            "and reports how many.",
            "choices": ["error", "skip"],
        },
    )
    test_split_size: float = dataclasses.field(
        default=0.05,
        metadata={"help": "When the data set has no test split: the held-out share (< 1) or row count (>= 1) "
                          "taken from the training rows, with the training seed; 0 holds nothing out."},
    )
    max_prompt_length: int | None = dataclasses.field(
        default=None,
        metadata={"help": "DPO only: prompts longer than this many tokens keep their last max_prompt_length tokens "
                          "(what TRL's DPO did before TRL 1.x removed the key; max_length still limits prompt + "
                          "answer). Counted and logged."},
    )
    eval_exact_match: bool = dataclasses.field(
        default=True, metadata={"help": "Measure held-out exact match before and after training."}
    )
    eval_max_samples: int = dataclasses.field(
        default=300, metadata={"help": "Number of held-out examples used for exact match."}
    )
    eval_max_new_tokens: int = dataclasses.field(
        default=32, metadata={"help": "Maximum generated tokens per example during exact-match evaluation."}
    )
    eval_batch_size: int = dataclasses.field(
        default=64, metadata={"help": "Batch size for generation during exact-match evaluation."}
    )
    eval_generation_metrics: bool = dataclasses.field(
        default=False, metadata={"help": "After training, also measure held-out response perplexity and exact match / "
                                         "ROUGE-L / BLEU of generated responses (eval_max_samples rows per split)."}
    )
    # Sample generations during training (see instructkit.training.callbacks)
    sample_generations_steps: int = dataclasses.field(
        default=250,
        metadata={"help": "Every this many optimizer steps (and once at the end of training), generate greedy answers "
                          "to a few fixed prompts and log them (log, report_to targets, <output_dir>/samples.jsonl). "
                          "0 turns it off. Costs one short generation of sample_generations_num prompts "
                          "(eval_max_new_tokens tokens at most), on the main process."},
    )
    sample_generations_prompts: list[str] | None = dataclasses.field(
        default=None,
        metadata={"help": "User messages to sample answers for; default: sample_generations_num held-out rows of the "
                          "run's own data (their targets are shown next to the answers)."},
    )
    sample_generations_num: int = dataclasses.field(
        default=4, metadata={"help": "How many held-out rows to sample when sample_generations_prompts is not set."}
    )
    # Benchmarks through lm-evaluation-harness after training (see instructkit.evaluation.harness)
    eval_benchmarks: list[str] | None = dataclasses.field(
        default=None,
        metadata={"help": "lm-eval task/group names run on the starting model before training and on the trained "
                          "model after it, on the main process, e.g. [mmlu, truthfulqa_mc1, truthfulqa_mc2]; the "
                          "deltas get paired 95 % intervals. The training rows are checked for overlap with the "
                          "benchmark questions before training (decontaminate). Results go to "
                          "<output_dir>/benchmarks/ (compare.md, compare.png) and metrics.json."},
    )
    benchmark_data_dir: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Local benchmark data laid out like the hub (<dir>/cais/mmlu, <dir>/truthfulqa/truthful_qa), "
                          "'fixture' for the bundled test data, or null for lm-eval's own download/cache."},
    )
    benchmark_num_fewshot: int | None = dataclasses.field(
        default=5, metadata={"help": "Few-shot examples (MMLU's standard 5); tasks that fix their own (TruthfulQA: 0) "
                                     "keep it. null = each task's default."}
    )
    benchmark_limit: float | None = dataclasses.field(
        default=None, metadata={"help": "Evaluate only this many documents per task (or a fraction if < 1)."}
    )
    benchmark_batch_size: int = dataclasses.field(
        default=8, metadata={"help": "Fixed lm-eval batch size ('auto' probes for minutes on CPU, so not offered)."}
    )
    benchmark_chat_template: bool = dataclasses.field(
        default=False, metadata={"help": "Wrap benchmark prompts in the tokenizer's chat template (lm-eval's "
                                         "--apply_chat_template)."}
    )
    benchmark_fewshot_as_multiturn: bool = dataclasses.field(
        default=True, metadata={"help": "With the chat template: few-shot examples as separate user/assistant turns."}
    )
    benchmark_steps: int = dataclasses.field(
        default=0, metadata={"help": "Also run the eval_benchmarks every this many optimizer steps during training, on "
                                     "the in-memory model (with benchmark_limit; main process; RNG states and train "
                                     "mode restored): logged to report_to and drawn in training_curves.png. 0 = "
                                     "only before and after training."}
    )
    decontaminate: str = dataclasses.field(
        default="report",
        metadata={"help": "With eval_benchmarks: 'report' lists the training rows whose word n-grams overlap benchmark "
                          "questions (file:row) before training; 'drop' also removes them from the training data "
                          "(counted and listed; works for mixtures).", "choices": ["report", "drop"]},
    )
    decontamination_ngram: int = dataclasses.field(
        default=8, metadata={"help": "Word n-gram size of the decontamination report (shorter questions match whole)."}
    )
    padding_free_collator: bool = dataclasses.field(
        default=False,
        metadata={"help": "Set by instructkit when padding_free: true meets max_length without packing (TRL refuses that "
                          "combination although it truncates every row to max_length anyway): TRL then gets "
                          "padding_free: false plus its own padding-free collator, so batches are still flattened "
                          "with no pad token. The resolved config.yaml records both."},
    )
    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={"help": "Start over in an output_dir that holds a finished run or another run's checkpoints "
                          "(they are removed). Without it a finished output_dir is refused, and an unfinished run "
                          "with the same config resumes from its last complete checkpoint."},
    )


@dataclasses.dataclass
class EvaluateArguments:
    """The benchmark recipe's arguments (recipes/evaluate.py, `instructkit eval`)."""

    no_machine_defaults: typing.ClassVar[tuple[str, ...]] = ("model_name_or_path",)  # not the recipes' `embedded`

    models: list[str] = dataclasses.field(
        default_factory=list,
        metadata={"help": "Model or adapter folders; with several, deltas are reported against the first."})
    model_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "One model or adapter folder, as every other recipe names it (evaluated "
                                        "first when --models are given too)."})
    base: str | None = dataclasses.field(
        default=None, metadata={"help": "Base model folder for adapters whose config names none that exists here."})
    tasks: list[str] = dataclasses.field(
        default_factory=lambda: list(DEFAULT_TASKS), metadata={"help": "lm-eval task, group or tag names."})
    data_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Local benchmark data (hub layout), 'fixture', or none for lm-eval's own."})
    num_fewshot: int | None = dataclasses.field(
        default=5, metadata={"help": "Few-shot examples; tasks that fix their own (TruthfulQA: 0) keep it."})
    limit: float | None = dataclasses.field(default=None, metadata={"help": "Documents per task (for quick runs)."})
    batch_size: int = dataclasses.field(default=8, metadata={"help": "Fixed lm-eval batch size."})
    apply_chat_template: bool = dataclasses.field(
        default=False, metadata={"help": "Wrap prompts in each model's chat template."})
    fewshot_as_multiturn: bool = dataclasses.field(
        default=True, metadata={"help": "With the chat template: few-shot examples as separate turns."})
    device: str | None = dataclasses.field(default=None, metadata={"help": "Default: cuda if available, else cpu."})
    backend: str = dataclasses.field(
        default="hf", metadata={"help": "lm-eval's model type: hf (transformers, any machine) or vllm (GPUs; needs "
                                        "pip install 'instructkit[vllm]'). Adapters run as vLLM LoRA.",
                                "choices": ["hf", "vllm"]})
    tensor_parallel_size: int = dataclasses.field(
        default=1, metadata={"help": "vllm: GPUs each model copy is split over."})
    data_parallel_size: int = dataclasses.field(
        default=1, metadata={"help": "vllm: model copies, each on its own GPUs (needs ray)."})
    output_dir: str = dataclasses.field(default="outputs/evaluate", metadata={"help": "Where results are written."})
    decontaminate: list[str] | None = dataclasses.field(
        default=None, metadata={"help": "Training data files/folders ('embedded') to check against the benchmarks."})
    decontamination_ngram: int = dataclasses.field(default=8, metadata={"help": "n-gram size of that check."})

    def model_dirs(self) -> list[str]:
        """The models to evaluate: --model_name_or_path first, then --models."""
        models = ([self.model_name_or_path] if self.model_name_or_path else []) + list(self.models)
        if not models:
            raise InstructkitError("no model to evaluate.", fix="pass --model_name_or_path DIR (or --models DIR ...).")
        return models
