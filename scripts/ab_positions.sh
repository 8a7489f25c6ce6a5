#!/usr/bin/env bash
# Issue 13's A/B (BENCHMARKS.md "Positions"): configs/ab-positions.args trained with model.positions=learned and
# =rope, each a named DVC experiment `ab-<arm>` of the whole pipeline in this workspace, then their table.
#   bash scripts/ab_positions.sh            # both arms, 8 training minutes each
#   bash scripts/ab_positions.sh rope       # one arm
set -euo pipefail
cd "$(dirname "$0")/.."
arms=("$@")
[[ ${#arms[@]} -gt 0 ]] || arms=(learned rope)
mapfile -t flags < <(while IFS= read -r line; do line="${line%%#*}"; line="${line//[[:space:]]/}"
                     [[ -n "$line" ]] && printf -- '-S\n%s\n' "$line"; done < configs/ab-positions.args)
for arm in "${arms[@]}"; do
  dvc exp run -n "ab-$arm" "${flags[@]}" -S "model.positions=$arm" ${RUNG_ARGS:-}
done
dvc exp show --no-pager --md || true
