"""LoRA supervised fine-tuning with TRL's SFTTrainer: the base stays frozen, adapters train.

    accelerate launch recipes/sft_lora.py                                   # embedded default, no arguments
    accelerate launch recipes/sft_lora.py --config my.yaml --lora_r 32

Config: configs/sft_lora.yaml next to this file unless --config is given; any key can be overridden as
--key value. LoRA goes on all linear layers unless lora_target_modules says otherwise. Saves the adapter
(`instructkit merge` merges it into the base), tokenizer, resolved config and metrics to output_dir.
"""

from pathlib import Path

from instructkit.errors import user_errors
from instructkit.modeling.adapters import lora_config
from instructkit.modeling.loading import load_model, load_tokenizer
from instructkit.training.sft import SFTRun, load_sft_data, parse_sft_config

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sft_lora.yaml"


def main(argv=None):
    from trl import SFTTrainer

    # Parse the config: YAML + --key value overrides, every problem reported before anything loads
    config = parse_sft_config(argv, DEFAULT_CONFIG, fixed={"use_peft": True, "load_in_4bit": False})

    # Data (validated rows in TRL's forms, held-out splits) and tokenizer (chat template, distinct pad token)
    data = load_sft_data(config)
    tokenizer, new_tokens = load_tokenizer(config)

    # The run: final config (loss for this data and template), output_dir ready (resume), config.yaml written
    run = SFTRun.start(config, data, tokenizer)

    # Model in full precision for the machine; LoRA adapters on every linear layer (+ tokens the template added)
    model = load_model(run.config, tokenizer)
    peft_config = lora_config(run.config.model, model, new_tokens)

    # Trainer (it wraps the model with the adapters), then checks of the rows TRL prepared and the run's callbacks
    trainer = SFTTrainer(model=model, args=run.config.training, processing_class=tokenizer, peft_config=peft_config,
                         train_dataset=run.train_dataset, eval_dataset=run.eval_dataset, data_collator=run.data_collator)
    run.prepare(trainer)

    # Train, measured before and after (held-out exact match), then save the adapter
    run.measure(trainer, "before")
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    run.measure(trainer, "after")
    run.save(trainer, result)


if __name__ == "__main__":
    with user_errors():
        main()
