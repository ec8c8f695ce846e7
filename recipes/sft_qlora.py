"""QLoRA supervised fine-tuning with TRL's SFTTrainer: a 4-bit NF4 base (double quantization), LoRA on top.

    accelerate launch recipes/sft_qlora.py                                  # embedded default, no arguments
    accelerate launch recipes/sft_qlora.py --config my.yaml --model_name_or_path path/to/model

Config: configs/sft_qlora.yaml next to this file unless --config is given; any key can be overridden as
--key value. The 4-bit compute dtype follows the machine (fp32 on CPU, bf16 on GPUs that support it).
Saves the adapter (merge it into a full-precision base, never into 4-bit), tokenizer, resolved
config and metrics to output_dir.
"""

from pathlib import Path

from instructkit.errors import user_errors
from instructkit.modeling.adapters import adapters_to_compute_dtype, lora_config
from instructkit.modeling.loading import load_model, load_tokenizer
from instructkit.modeling.quantization import frozen_embeddings_to_bf16, qlora_config
from instructkit.training.sft import SFTRun, load_sft_data, parse_sft_config

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sft_qlora.yaml"


def main(argv=None):
    from trl import SFTTrainer

    # Parse the config: YAML + --key value overrides, every problem reported before anything loads
    config = parse_sft_config(argv, DEFAULT_CONFIG, fixed={"use_peft": True, "load_in_4bit": True})

    # Data (validated rows in TRL's forms, held-out splits) and tokenizer (chat template, distinct pad token)
    data = load_sft_data(config)
    tokenizer, new_tokens = load_tokenizer(config)

    # The run: final config (loss for this data and template), output_dir ready (resume), config.yaml written
    run = SFTRun.start(config, data, tokenizer)

    # Model quantized to 4-bit NF4 via bitsandbytes; LoRA adapters on every linear layer (+ new template tokens)
    quantization = qlora_config(run.config.model)
    model = load_model(run.config, tokenizer, quantization_config=quantization)
    peft_config = lora_config(run.config.model, model, new_tokens)

    # Trainer (it wraps the model with the adapters; they stay in the compute dtype), then checks and callbacks
    trainer = SFTTrainer(model=model, args=run.config.training, processing_class=tokenizer, peft_config=peft_config,
                         train_dataset=run.train_dataset, eval_dataset=run.eval_dataset, data_collator=run.data_collator)
    adapters_to_compute_dtype(trainer.model, quantization)
    frozen_embeddings_to_bf16(trainer.model, quantization)  # fp32 CPU runs: the largest layer NF4 leaves
    run.prepare(trainer)

    # Train, measured before and after (held-out exact match), then save the adapter
    run.measure(trainer, "before")
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    run.measure(trainer, "after")
    run.save(trainer, result)


if __name__ == "__main__":
    with user_errors():
        main()
