#!/usr/bin/env bash
# The main job on a CPU-only machine: set up, then run the whole pipeline (organize -> ... -> render) on the
# embedded music21 corpus with the small CPU overrides in configs/cpu-tiny.args, through DVC itself.
# On a GPU machine run plain `dvc repro` instead (params.yaml holds the seed's GPU recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
overrides=()
while IFS= read -r line; do
  line="${line%%#*}"; line="${line//[[:space:]]/}"
  [[ -n "$line" ]] && overrides+=(-S "$line")
done < configs/cpu-tiny.args
start=$(date +%s)
dvc exp run "${overrides[@]}" "$@"
echo "main job finished in $(( $(date +%s) - start )) s: listening page reports/index.html, metrics in metrics/, model in models/final"
dvc metrics show
echo "to share this run: commit params.yaml, dvc.lock and metrics/ together on a branch of their own, then dvc push (README: Share a trained pipeline)"
