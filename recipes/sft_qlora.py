"""QLoRA supervised fine-tuning with TRL's SFTTrainer: a 4-bit NF4 base (double quantization), LoRA on top.

    accelerate launch recipes/sft_qlora.py                                  # embedded default, no arguments
    accelerate launch recipes/sft_qlora.py --config my.yaml --model_name_or_path path/to/model

Config: configs/sft_qlora.yaml next to this file unless --config is given; any key can be overridden as
--key value. The 4-bit compute dtype follows the machine (fp32 on CPU, bf16 on GPUs that support it).
Saves the adapter (merge it into a full-precision base, never into 4-bit), tokenizer, resolved
config and metrics to output_dir.
"""

from pathlib import Path

from instructkit import modeling
from instructkit.errors import user_errors
from instructkit.runs import Run

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sft_qlora.yaml"


def main():
    from trl import SFTConfig, SFTTrainer

    # Parse config: YAML + command-line overrides, checked before anything loads
    run = Run("sft_qlora", SFTConfig, DEFAULT_CONFIG)

    # Load data (validated, in TRL's conversational form) and tokenizer
    dataset = run.load_data()
    tokenizer = run.load_tokenizer()

    # Load model quantized to 4-bit NF4 via bitsandbytes; LoRA adapters on every linear layer
    quantization = modeling.qlora_config(run.model_args)
    model = modeling.load_model(run.model_args, run.training_args, tokenizer, quantization_config=quantization)
    peft_config = modeling.lora_config(run.model_args, model, run.new_tokens)  # new template tokens train too

    # Initialize the trainer (it wraps the model with the adapters)
    trainer = SFTTrainer(model=model, args=run.training_args, processing_class=tokenizer,
                         peft_config=peft_config, **run.trainer_datasets())
    modeling.adapters_to_compute_dtype(trainer.model, quantization)

    # Train (held-out exact match before and after), then save the adapter
    run.train(trainer)
    run.save(trainer)


if __name__ == "__main__":
    with user_errors():
        main()
