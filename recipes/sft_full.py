"""Full-parameter supervised fine-tuning (SFT) with TRL's SFTTrainer.

    accelerate launch recipes/sft_full.py                                   # embedded default, no arguments
    accelerate launch recipes/sft_full.py --config my.yaml --learning_rate 2e-5

Config: configs/sft_full.yaml next to this file unless --config is given; any key can be overridden as
--key value. Only response tokens (and the end-of-turn token) are trained. Prints held-out exact match
before and after training; saves model, tokenizer, resolved config and metrics to output_dir.
"""

from pathlib import Path

from instructkit.errors import user_errors
from instructkit.modeling.loading import load_model, load_tokenizer
from instructkit.training.sft import SFTRun, load_sft_data, parse_sft_config

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sft_full.yaml"


def main(argv=None):
    from trl import SFTTrainer

    # Parse the config: YAML + --key value overrides, every problem reported before anything loads
    config = parse_sft_config(argv, DEFAULT_CONFIG, fixed={"use_peft": False, "load_in_4bit": False})

    # Data (validated rows in TRL's forms, held-out splits) and tokenizer (chat template, distinct pad token)
    data = load_sft_data(config)
    tokenizer, _ = load_tokenizer(config)

    # The run: final config (loss for this data and template), output_dir ready (resume), config.yaml written
    run = SFTRun.start(config, data, tokenizer)

    # Model: every weight trainable, fp32 on CPU / bf16 where supported
    model = load_model(run.config, tokenizer)

    # Trainer, then checks of the rows TRL prepared and the run's callbacks
    trainer = SFTTrainer(model=model, args=run.config.training, processing_class=tokenizer,
                         train_dataset=run.train_dataset, eval_dataset=run.eval_dataset, data_collator=run.data_collator)
    run.prepare(trainer)

    # Train, measured before and after (held-out exact match), then save
    run.measure(trainer, "before")
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    run.measure(trainer, "after")
    run.save(trainer, result)


if __name__ == "__main__":
    with user_errors():
        main()
