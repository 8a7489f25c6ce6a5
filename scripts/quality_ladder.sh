#!/usr/bin/env bash
# The quality ladder (QUALITY.md): every rung of configs/quality-<rung>.args, on top of configs/quality-common.args,
# as one named DVC experiment `quality-<rung>` of the whole pipeline in this workspace, one after another; then the
# `dvc exp show` table of what QUALITY.md compares.
#   bash scripts/quality_ladder.sh              # rungs s, m, l (about 70 minutes of training on a 2-core CPU)
#   bash scripts/quality_ladder.sh l            # one rung; its listening page is reports/index.html afterwards
#   RUNG_ARGS="train" bash scripts/quality_ladder.sh s   # extra `dvc exp run` arguments (here: stop after train)
set -euo pipefail
cd "$(dirname "$0")/.."
overrides() {  # the -S flags of an args file: one override a line, '#' starts a comment
  while IFS= read -r line; do
    line="${line%%#*}"; line="${line//[[:space:]]/}"
    [[ -n "$line" ]] && printf -- '-S\n%s\n' "$line"
  done < "$1"
}
rungs=("$@")
[[ ${#rungs[@]} -gt 0 ]] || rungs=(s m l)
for rung in "${rungs[@]}"; do
  [[ -f "configs/quality-$rung.args" ]] || { echo "no configs/quality-$rung.args (rungs: s, m, l)" >&2; exit 2; }
  mapfile -t flags < <(overrides configs/quality-common.args; overrides "configs/quality-$rung.args")
  echo "== rung $rung: dvc exp run -n quality-$rung ${flags[*]} ${RUNG_ARGS:-}"
  # shellcheck disable=SC2086  # RUNG_ARGS is a list of words on purpose
  dvc exp run -n "quality-$rung" "${flags[@]}" ${RUNG_ARGS:-}
done
dvc exp show --no-pager --md --drop 'Created|State|Executor' \
  --keep 'Experiment|model\.n_layer|model\.d_model|train\.max_minutes|val_bits_per_token|test_bits_per_token|style|tokens_per_s' \
  || dvc exp show --no-pager --md
