"""Stage tokenize: data/organized -> data/tokens (tokenizer.json, shard-*.parquet, manifest.parquet)."""
from __future__ import annotations

import os
import sys

# This script shares its name with the standard library's `tokenize` (which inspect/linecache, hence torch, import).
# Python puts this folder first on sys.path, so cache the real module before anything can import it from here.
_HERE = os.path.dirname(os.path.abspath(__file__))
_saved_path = list(sys.path)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
import tokenize as _stdlib_tokenize  # noqa: E402,F401

sys.path[:] = _saved_path

from _common import REPO_ROOT, configs, run  # noqa: E402

from mozart.tokenize import tokenize_corpus  # noqa: E402


def main() -> None:
    _seed, (cfg,) = configs("tokenize")
    summary = tokenize_corpus(REPO_ROOT / "data" / "organized", REPO_ROOT / "data" / "tokens", cfg)
    print(summary.line())


if __name__ == "__main__":
    run(main)
