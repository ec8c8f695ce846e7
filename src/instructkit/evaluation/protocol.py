"""How benchmark numbers are produced (tasks, shots, chat template, limit, device): recorded with every result."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from instructkit.config.arguments import DEFAULT_TASKS

FIXTURE = "fixture"  # data_dir value meaning the project's own small fixture (evaluation/fixture_data)


@dataclass
class Protocol:
    """How the numbers were produced; saved next to them so a comparison only compares like with like."""

    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    data_dir: str | None = None        # None: lm-eval's own data (hub or a populated HF datasets cache)
    num_fewshot: int | None = 5        # tasks that fix their own shots (TruthfulQA: 0) keep them (lm-eval's rule)
    limit: float | None = None
    batch_size: int = 8
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = True  # only meaningful with the chat template
    device: str | None = None          # None: cuda when available, else cpu
    backend: str = "hf"                # lm-eval's model type: hf (transformers) or vllm (GPU only)
    tensor_parallel_size: int = 1      # vllm: GPUs per model copy
    data_parallel_size: int = 1        # vllm: model copies (ray actors)

    @classmethod
    def from_arguments(cls, args) -> Protocol:
        """The protocol of `instructkit eval`'s arguments (`config.arguments.EvaluateArguments`: same names)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
