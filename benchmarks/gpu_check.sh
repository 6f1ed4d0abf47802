#!/usr/bin/env bash
# GPU check of the networks, sparse convs, training speed and reconstruction time (see
# benchmarks/gpu_check.py). Needs no install: the machine's own torch and numpy.
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--sections models,sparse,train,recon]
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
