#!/usr/bin/env bash
# Installs everything Mozart needs on a fresh Debian machine (run as root, or with sudo for apt):
# FluidSynth + a General MIDI soundfont (render stage), torch (the CPU wheel on machines without a GPU), and this
# package with its pinned-range dependencies. With --test it also installs headless Chromium for the report test.
# Safe to run again: it skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(fluidsynth fluid-soundfont-gm)
if [[ "${1:-}" == "--test" ]]; then apt_packages+=(chromium); fi
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)  # the Vega scripts for offline `dvc plots show` (below)

if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: no apt-get here; install FluidSynth and a GM soundfont yourself (see README)" >&2
fi

PY=${PYTHON:-python3}
# torch first, explicitly: an unpinned `torch` requirement would pull a multi-GB CUDA build on a CPU-only machine.
if ! $PY -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0"
  $PY -m pip install -q torch==2.13.0
fi
$PY -m pip install -q -e ".[dev]"

# `dvc plots show` offline: DVC's page loads Vega from a CDN, so install vega/vega-lite/vega-embed from the npm registry
# and point DVC at a template with them inlined (mozart/report/vega_template.py); both live in git-ignored .dvc/tmp/.
template=.dvc/tmp/plots-offline.html
if [[ ! -f $template ]] && command -v npm >/dev/null 2>&1; then
  echo "setup: installing the Vega scripts for offline dvc plots"
  npm install -s --no-audit --no-fund --no-save --prefix .dvc/tmp/vega vega@5 vega-lite@5 vega-embed@6
  $PY -m mozart.report.vega_template .dvc/tmp/vega/node_modules "$template"
fi
if [[ -f $template ]]; then dvc config --local plots.html_template tmp/plots-offline.html; fi
echo "setup: done ($($PY -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
