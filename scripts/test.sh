#!/usr/bin/env bash
# Set up (including headless Chromium for the listening-page screenshot test) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
python3 -m pytest -q "$@"
