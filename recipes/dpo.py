"""Direct preference optimization (DPO) with TRL's DPOTrainer, chained from an SFT output.

    accelerate launch recipes/sft_full.py && accelerate launch recipes/dpo.py   # the default chain
    accelerate launch recipes/dpo.py --model_name_or_path outputs/sft_lora        # from an SFT adapter
    accelerate launch recipes/dpo.py --use_peft true [--load_in_4bit true]        # LoRA [QLoRA] DPO

Config: configs/dpo.yaml next to this file unless --config is given; any key can be overridden as --key value.
An adapter start is merged into its base in full precision first (never into 4-bit). The reference is that start,
held explicitly (the adapter disabled under LoRA, else a frozen copy), never reloaded from a path. Prints held-out
exact match before and after and held-out reward accuracy; saves model or adapter, tokenizer, config, metrics.
"""

from pathlib import Path

from instructkit.errors import user_errors
from instructkit.modeling.adapters import adapters_to_compute_dtype, lora_config
from instructkit.modeling.loading import load_model, load_tokenizer
from instructkit.modeling.quantization import frozen_embeddings_to_bf16, qlora_config
from instructkit.training.dpo import DPORun, load_preference_data, parse_dpo_config, reference_model

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "dpo.yaml"


def main(argv=None):
    from trl import DPOTrainer

    # Parse the config: YAML + --key value overrides, every problem reported before anything loads
    config = parse_dpo_config(argv, DEFAULT_CONFIG)

    # Preference pairs (validated; prompt / chosen / rejected), the SFT model's tokenizer, the run
    data = load_preference_data(config)
    tokenizer, new_tokens = load_tokenizer(config)
    run = DPORun.start(config, data, tokenizer)  # output_dir ready (resume), config.yaml written

    # The policy (an SFT adapter is merged first); 4-bit only under LoRA; the reference is the start
    quantization = qlora_config(run.config.model) if run.config.model.load_in_4bit else None
    model = load_model(run.config, tokenizer, quantization_config=quantization)
    peft_config = lora_config(run.config.model, model, new_tokens) if run.config.model.use_peft else None
    ref_model = reference_model(model, peft_config, run.config.training)

    # Trainer (QLoRA adapters kept in the compute dtype), then checks of the prepared pairs and the callbacks
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=run.config.training, processing_class=tokenizer,
                         peft_config=peft_config, train_dataset=run.train_dataset, eval_dataset=run.eval_dataset)
    adapters_to_compute_dtype(trainer.model, quantization)
    frozen_embeddings_to_bf16(trainer.model, quantization)  # fp32 CPU runs: the largest layer NF4 leaves
    run.prepare(trainer)

    # Train, measured before and after (held-out exact match; reward accuracy after), then save
    run.measure(trainer, "before")
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    run.measure(trainer, "after")
    run.save(trainer, result)


if __name__ == "__main__":
    with user_errors():
        main()
