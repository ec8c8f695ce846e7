"""Models: folders and names (`files`), loading model and tokenizer (`loading`), LoRA (`adapters`), 4-bit
(`quantization`), merging an adapter for good (`merging`) and memory estimates (`memory`)."""
