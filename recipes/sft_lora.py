"""LoRA supervised fine-tuning with TRL's SFTTrainer: the base stays frozen, adapters train.

    accelerate launch recipes/sft_lora.py                                   # embedded default, no arguments
    accelerate launch recipes/sft_lora.py --config my.yaml --lora_r 32

Config: configs/sft_lora.yaml next to this file unless --config is given; any key can be overridden as
--key value. LoRA goes on all linear layers unless lora_target_modules says otherwise. Saves the adapter
(PEFT's merge_and_unload merges it into the base), tokenizer, resolved config and metrics to output_dir.
"""

from pathlib import Path

from instructkit import modeling
from instructkit.errors import user_errors
from instructkit.runs import Run

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sft_lora.yaml"


def main():
    from trl import SFTConfig, SFTTrainer

    # Parse config: YAML + command-line overrides, checked before anything loads
    run = Run("sft_lora", SFTConfig, DEFAULT_CONFIG)

    # Load data (validated, in TRL's conversational form) and tokenizer
    dataset = run.load_data()
    tokenizer = run.load_tokenizer()

    # Load model in full precision for the machine; LoRA adapters on every linear layer
    model = modeling.load_model(run.model_args, run.training_args, tokenizer)
    peft_config = modeling.lora_config(run.model_args, model, run.new_tokens)  # new template tokens train too

    # Initialize the trainer (it wraps the model with the adapters)
    trainer = SFTTrainer(model=model, args=run.training_args, processing_class=tokenizer,
                         peft_config=peft_config, **run.trainer_datasets())

    # Train (held-out exact match before and after), then save the adapter
    run.train(trainer)
    run.save(trainer)


if __name__ == "__main__":
    with user_errors():
        main()
