"""What a run does around TRL's trainer: the shared steps (`run`), SFT and DPO (`sft`, `dpo`), the output dir and
resume (`outputs`), checks before the first step (`preflight`), callbacks, measurements, curves and model card."""
