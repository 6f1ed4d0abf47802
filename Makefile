# Two entry points (README.md): `make demo` runs the main job, `make test` the test suite.
# Both create or reuse the virtual environment $(VENV) and install the project into it first.
VENV ?= .venv
CORES ?= 2
PYTHON ?= python3
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test lint format setup clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=24"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# The main job on the embedded default (config.yaml): synthetic data, then every stage so far.
demo: setup
	$(BIN)/snakemake --cores $(CORES)

# The whole test suite, including the end-to-end Snakemake and SLURM runs.
test: setup
	$(BIN)/python -m pytest

# Everything CI checks besides the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint --cores 1

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt .

clean-results:
	rm -rf results logs .snakemake
