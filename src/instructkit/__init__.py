"""instructkit: recipes for instruction fine-tuning on Hugging Face TRL.

Heavy libraries (torch, transformers, trl) are imported inside functions, so that
`import instructkit` and `--help` stay fast.
"""

__version__ = "0.1.0"
