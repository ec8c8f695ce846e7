"""The baseline a lecture-style script runs: every example padded to max_length, a plain `transformers.Trainer`.

    python benchmarks/padded_loop.py MODEL_DIR ALPACA_JSONL OUT_DIR --max_steps N --batch_size 16 --max_length 128

Same model, rows, chat template, batch size and max_length as the recipe; loss on the response only (prompt and pad
labels -100), fp32 on CPU. What differs is the padding: `padding="max_length"`, so every step computes
batch_size x max_length tokens whatever the rows' lengths.
"""

import argparse
import json

import torch
from datasets import Dataset
from transformers import (AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments,
                          default_data_collator)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir"); p.add_argument("data"); p.add_argument("out_dir")
    p.add_argument("--max_steps", type=int, default=30)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_length", type=int, default=128)
    a = p.parse_args()

    tok = AutoTokenizer.from_pretrained(a.model_dir)
    rows = [json.loads(line) for line in open(a.data)]

    def encode(row):
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}],
                                       tokenize=False)
        enc = tok(full, padding="max_length", truncation=True, max_length=a.max_length, add_special_tokens=False)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        labels = [t if i >= n_prompt and m else -100 for i, (t, m) in enumerate(zip(enc["input_ids"],
                                                                                  enc["attention_mask"]))]
        return {**enc, "labels": labels}

    ds = Dataset.from_list(rows).map(encode, remove_columns=list(rows[0]))
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32)
    args = TrainingArguments(output_dir=a.out_dir, per_device_train_batch_size=a.batch_size, max_steps=a.max_steps,
                             learning_rate=1e-3, use_cpu=True, report_to="none", save_strategy="no",
                             logging_steps=1000, seed=42)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=default_data_collator).train()


if __name__ == "__main__":
    main()
