# Quick start: `make demo` then `make test`. Both build .venv on their own.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test demo bench gpu-check docs lint format clean

setup: $(STAMP)

# torch==2.13.0 goes in first (here it resolves to the local CPU wheel); the project's
# `torch>=2.1` is then already satisfied, so pip never swaps it for a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	# The package's bytecode, now: an editable install leaves it to the first import, which
	# cannot keep it where PYTHONDONTWRITEBYTECODE is set (as in CI), and then every command
	# compiles the package again (~0.1 s of `describe one.png` on a 2-core CPU).
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/img2prompt demo

bench: setup
	$(BIN)/python benchmarks/run_all.py

# The documentation site (docs/, mkdocs.yml) into site/; broken links or references fail it.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Every CUDA path with random weights of the real sizes, in one run (<= 5 min on one GPU). No
# setup: the script imports the project from src/, so any Python with torch runs it (the lent
# GPU machine's own python3 reaches no registry: docs/past-one-machine.md, scripts/gpu_wheels.sh).
gpu-check:
	PYTHONPATH=src $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) benchmarks/gpu_check.py --json gpu-check.json

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python scripts/check_functions.py src

format: setup
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

clean:
	rm -rf $(VENV) demo-out bench-out site .pytest_cache .ruff_cache
