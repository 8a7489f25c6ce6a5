#!/usr/bin/env bash
# The GPU check, in one go (<= 8 minutes on one H100/H200, no network, no installs):
#   bash benchmarks/gpu_check.sh            # CUDA tests, recipe training speed/memory, generation speed
#   bash benchmarks/gpu_check.sh --dry-run  # the same on CPU at tiny sizes (the test suite runs this)
# Writes one markdown table to benchmarks/out/gpu_check.md (--out PATH to change); see benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MOZART_TRACKING=0
exec timeout --signal=INT 480 python benchmarks/gpu_check.py "$@"
