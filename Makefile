# Two commands do all set-up on a fresh clone:
#   make demo   venv + install, then SFT (QLoRA) on the embedded default, printing exact match before/after
#               (a second `make demo` starts over: --overwrite_output_dir true)
#   make test   venv + install, then the test suite (offline)
#   make bench  benchmarks -> benchmarks/RESULTS.md (+ plots); make bench-quick checks them in a few minutes
#
# torch goes in first, pinned, so pip takes the build that lies on this machine's disk (CPU) and a GPU
# machine gets PyPI's default CUDA build of the same version; the package's own range accepts it as is.
# Another build: make setup TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu128"

PYTHON        ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
TORCH_SPEC    ?= torch==2.13.0
PIP_TORCH_ARGS ?=
EXTRAS        ?= all
TEST_WORKERS  ?= 2

# No hub at run time: the embedded default is built locally. DeepSpeed's one-time op build is cached here.
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/instructkit/torch_extensions

.PHONY: setup demo test test-fast bench bench-quick clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/sft_qlora.py --overwrite_output_dir true

# two tests at a time (pytest-xdist; a module's tests stay together, so its fixtures are built once)
test: setup
	$(BIN)/python -m pytest tests -q -n $(TEST_WORKERS) --dist loadscope --durations=25

test-fast: setup
	$(BIN)/python -m pytest tests -q -n $(TEST_WORKERS) --dist loadscope -m "not slow"

# Benchmarks (scripts, not tests): every section, then benchmarks/RESULTS.md + PNGs, from scratch (~30 min, 2 cores)
bench: setup
	$(BIN)/python benchmarks/run_all.py

bench-quick: setup
	$(BIN)/python benchmarks/run_all.py --quick

clean:
	rm -rf outputs .pytest_cache
