"""Full-parameter supervised fine-tuning (SFT) with TRL's SFTTrainer.

    accelerate launch recipes/sft_full.py                                   # embedded default, no arguments
    accelerate launch recipes/sft_full.py --config my.yaml --learning_rate 2e-5

Config: configs/sft_full.yaml next to this file unless --config is given; any key can be overridden as
--key value. Only response tokens (and the end-of-turn token) are trained. Prints held-out exact match
before and after training; saves model, tokenizer, resolved config and metrics to output_dir.
"""

from pathlib import Path

from instructkit import modeling
from instructkit.errors import user_errors
from instructkit.runs import Run

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sft_full.yaml"


def main():
    from trl import SFTConfig, SFTTrainer

    # Parse config: YAML + command-line overrides, checked before anything loads
    run = Run("sft_full", SFTConfig, DEFAULT_CONFIG)

    # Load data (validated, in TRL's conversational form) and tokenizer
    dataset = run.load_data()
    tokenizer = run.load_tokenizer()

    # Load model: every weight trainable, fp32 on CPU / bf16 where supported
    model = modeling.load_model(run.model_args, run.training_args, tokenizer)

    # Initialize the trainer
    trainer = SFTTrainer(model=model, args=run.training_args, processing_class=tokenizer, **run.trainer_datasets())

    # Train (held-out exact match before and after), then save
    run.train(trainer)
    run.save(trainer)


if __name__ == "__main__":
    with user_errors():
        main()
