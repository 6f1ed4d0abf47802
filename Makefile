# Two entry points (README.md): `make demo` runs the main job, `make test` the test suite.
# Both create or reuse the virtual environment $(VENV) and install the project into it first.
VENV ?= .venv
CORES ?= 2
TEST_WORKERS ?= 2
REPORT ?= report.html
PYTHON ?= python3
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo report test test-fast lint format setup setup-mmdet clean-results

setup: $(VENV)/.installed

# The mmdet (VarifocalNet) backend, which the tests exercise: mmcv 2.1.0 has no wheel and is
# built from source with its ops (long on 2 cores; pip's wheel cache keeps it, and .ci/run
# uses the prebuilt wheel in ../shared/wheels when present: docs/backends.md). Its
# setup.py needs pkg_resources, gone from setuptools >= 81; torch 2.13 needs >= 77.
setup-mmdet: $(VENV)/.installed-mmdet

$(VENV)/.installed-mmdet: $(VENV)/.installed
	$(BIN)/python -m pip install "setuptools>=77,<81" wheel ninja
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(BIN)/python -m pip install --no-build-isolation \
		-c constraints-mmdet.txt mmcv==2.1.0
	$(BIN)/python -m pip install -c constraints-mmdet.txt -e ".[dev,mmdet,smplx,spconv]"
	touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=24"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# The main job on the embedded default (config.yaml): synthetic data, every stage through the
# evaluation, then Snakemake's HTML report ($(REPORT)).
demo: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report $(REPORT)

# The HTML report of what has run so far (metrics, renders, curves, overlays).
report: setup
	$(BIN)/snakemake --report $(REPORT)

# The whole test suite, including the end-to-end Snakemake and SLURM runs, the mmdet backend
# and the spconv sparse-convolution backend, on $(TEST_WORKERS) pytest-xdist workers (the
# end-to-end tests are collected first so that the longest start first; the SLURM tests
# share one worker and one cluster). TEST_WORKERS=0 runs it in this process.
test: setup-mmdet
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The fast part alone (no end-to-end run): seconds to a few minutes.
test-fast: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not slurm"

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
