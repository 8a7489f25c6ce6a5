"""Stage tokenize (named tokenize_midi.py so it never shadows the standard library's `tokenize` module, which
Python would import from this folder): data/organized -> data/tokens (tokenizer.json, shard-*.parquet, manifest.parquet)."""
from __future__ import annotations

from _common import REPO_ROOT, configs, run

from mozart.tokenize import tokenize_corpus


def main() -> None:
    _seed, (cfg,) = configs("tokenize")
    summary = tokenize_corpus(REPO_ROOT / "data" / "organized", REPO_ROOT / "data" / "tokens", cfg)
    print(summary.line())


if __name__ == "__main__":
    run(main)
