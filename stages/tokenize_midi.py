"""Stage tokenize (named tokenize_midi.py so it never shadows the standard library's `tokenize` module, which
Python would import from this folder): data/organized -> data/tokens (tokenizer.json, shard-*.parquet, manifest.parquet)."""
from __future__ import annotations

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    _seed, (cfg,) = configs("tokenize")
    from mozart.data.tokenize import TokenizeSummary, run as tokenize
    from mozart.paths import TokenizePaths

    paths = TokenizePaths.under(REPO_ROOT)
    metrics = tokenize(cfg, None, paths)  # deterministic: draws no random numbers
    log_stage("tokenize", metrics, "tokenize.", files=[(paths.tokens_dir / "tokenizer.json", "tokens"),
                                                       (paths.tokens_dir / "manifest.parquet", "tokens")])
    print(TokenizeSummary(**metrics).line())


if __name__ == "__main__":
    run(main)
