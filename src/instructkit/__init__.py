"""instructkit: recipes for instruction fine-tuning on Hugging Face TRL.

Heavy libraries (torch, transformers, trl) are imported inside functions, so that
`import instructkit` and `--help` stay fast.
"""

import logging

__version__ = "0.1.0"

# bitsandbytes on a CPU with avx512_bf16 tries to fetch a kernel from the hub (`kernels`, not installed) and warns on
# every import when it cannot; its own CPU kernels run instead. The warning is noise in every log and error message.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
