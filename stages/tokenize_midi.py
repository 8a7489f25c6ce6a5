"""Stage tokenize (named tokenize_midi.py so it never shadows the standard library's `tokenize` module, which
Python would import from this folder): data/organized -> data/tokens (tokenizer.json, shard-*.parquet, manifest.parquet)."""
from __future__ import annotations

import dataclasses

from _common import REPO_ROOT, configs, load_params, run

from mozart.infra import tracking
from mozart.data.tokenize import tokenize_corpus


def main() -> None:
    _seed, (cfg,) = configs("tokenize")
    tokens_dir = REPO_ROOT / "data" / "tokens"
    summary = tokenize_corpus(REPO_ROOT / "data" / "organized", tokens_dir, cfg)
    with tracking.stage_run("tokenize", load_params(), REPO_ROOT) as mlrun:
        mlrun.log_metrics({f"tokenize.{k}": v for k, v in dataclasses.asdict(summary).items()})
        mlrun.log_artifact(tokens_dir / "tokenizer.json", "tokens")
        mlrun.log_artifact(tokens_dir / "manifest.parquet", "tokens")
    print(summary.line())


if __name__ == "__main__":
    run(main)
