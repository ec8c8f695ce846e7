"""Direct preference optimization (DPO) with TRL's DPOTrainer, chained from an SFT output.

    accelerate launch recipes/sft_full.py && accelerate launch recipes/dpo.py   # the default chain
    accelerate launch recipes/dpo.py --model_name_or_path outputs/sft_lora        # from an SFT adapter
    accelerate launch recipes/dpo.py --use_peft true                              # LoRA DPO
    accelerate launch recipes/dpo.py --use_peft true --load_in_4bit true          # QLoRA DPO

Config: configs/dpo.yaml next to this file unless --config is given; any key can be overridden as --key value.
The start may be a full model folder or an adapter folder (merged into its base in full precision first, never
into 4-bit). The reference model is that start, held explicitly: the adapter disabled under LoRA, else a frozen
in-memory copy (or precomputed log-probs) — never reloaded from a path. Prints held-out exact match before and
after, and held-out reward accuracy; saves model or adapter, tokenizer, resolved config and metrics.
"""

from pathlib import Path

from instructkit import modeling
from instructkit.errors import user_errors
from instructkit.runs import Run

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "dpo.yaml"


def main():
    from trl import DPOConfig, DPOTrainer

    # Parse config: YAML + command-line overrides, checked before anything loads
    run = Run("dpo", DPOConfig, DEFAULT_CONFIG, preference=True)

    # Load preference pairs (validated; prompt / chosen / rejected) and the SFT model's tokenizer
    dataset = run.load_data()
    tokenizer = run.load_tokenizer()

    # Load the policy (an SFT adapter is merged first); 4-bit only under LoRA; the reference is the start
    quantization = modeling.qlora_config(run.model_args) if run.model_args.load_in_4bit else None
    model = modeling.load_model(run.model_args, run.training_args, tokenizer, quantization_config=quantization)
    peft_config = modeling.lora_config(run.model_args, model, run.new_tokens) if run.model_args.use_peft else None
    ref_model = modeling.reference_model(model, peft_config, run.training_args)

    # Initialize the trainer
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=run.training_args, processing_class=tokenizer,
                         peft_config=peft_config, **run.trainer_datasets())
    if quantization is not None:
        modeling.adapters_to_compute_dtype(trainer.model, quantization)

    # Train (held-out exact match before and after, reward accuracy after), then save
    run.train(trainer)
    run.save(trainer)


if __name__ == "__main__":
    with user_errors():
        main()
