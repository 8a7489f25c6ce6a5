"""A synthetic token store the trainer accepts, without MIDI: random valid token ids in the tokenize/prepare layout.

The one place benchmarks write synthetic training data (benchmarks/gpu_check.py uses it); when the store format
changes (tokenize/prepare outputs, docs/CONTRACTS.md), adapt `write_synthetic_store` and every benchmark follows.
Token ids are drawn uniformly from the non-special ids of the default REMI tokenizer: valid ids, not valid music,
which is all a throughput or memory measurement needs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COMPOSERS = ["<unconditional>", "Synthetic A", "Synthetic B", "Synthetic C"]
N_SPECIAL = 3  # PAD, BOS, EOS come first in the vocabulary


def write_synthetic_store(root: Path, n_pieces: int, piece_tokens: int, seed: int = 0, n_val: int = 4,
                          rows_per_shard: int = 256, n_test: int = 0) -> Path:
    """ROOT/data/tokens (tokenizer.json + shard-*.parquet) and ROOT/data/prepared (the memory-mapped token store,
    metadata.parquet, composers.json) holding `n_pieces` pieces of `piece_tokens` random ids; the first `n_val` are
    the val split, the next `n_test` the test split. Pieces are streamed into the store, never all in memory.
    Returns ROOT (TrainPaths.under(ROOT))."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mozart.config import TokenizeConfig
    from mozart.data.store import SPLITS, SplitWriter, read_vocab_info, write_store_json
    from mozart.data.tokenize import build_tokenizer

    root = Path(root)
    tokens_dir, prepared_dir = root / "data/tokens", root / "data/prepared"
    tokens_dir.mkdir(parents=True, exist_ok=True)
    prepared_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(TokenizeConfig())
    tokenizer.save(tokens_dir / "tokenizer.json")
    rng = np.random.default_rng(seed)
    writers = {split: SplitWriter(prepared_dir, split) for split in SPLITS}
    meta = []
    for first in range(0, n_pieces, rows_per_shard):
        shard = f"shard-{first // rows_per_shard:05d}.parquet"
        ids = range(first, min(first + rows_per_shard, n_pieces))
        pieces = [rng.integers(N_SPECIAL, len(tokenizer), size=piece_tokens, dtype=np.uint16) for _ in ids]
        composer_ids = [1 + i % (len(COMPOSERS) - 1) for i in ids]
        names = [f"{COMPOSERS[c]}/piece{i:07d}" for i, c in zip(ids, composer_ids)]
        pq.write_table(pa.table({
            "piece_id": names, "composer": [COMPOSERS[c] for c in composer_ids],
            "transpose": pa.array([0] * len(names), pa.int8()),
            "tokens": pa.array([p.tolist() for p in pieces], pa.list_(pa.uint16())),
            "n_tokens": pa.array([piece_tokens] * len(names), pa.int32())}), tokens_dir / shard)
        for i, name, c, piece in zip(ids, names, composer_ids, pieces):
            split = "val" if i < n_val else "test" if i < n_val + n_test else "train"
            meta.append(dict(piece_id=name, work_id=name, composer=COMPOSERS[c], composer_id=c, split=split,
                             transpose=0, n_tokens=piece_tokens, shard=shard, row=i - first,
                             store_row=writers[split].append(piece, c)))
    write_store_json(prepared_dir, {split: w.close() for split, w in writers.items()},
                     read_vocab_info(tokens_dir / "tokenizer.json"), [])
    pd.DataFrame(meta).to_parquet(prepared_dir / "metadata.parquet")
    n_per = [sum(m["composer_id"] == c for m in meta) for c in range(len(COMPOSERS))]
    composers = {"unconditional_id": 0, "other_id": None, "names": COMPOSERS, "n_pieces": n_per,
                 "composer_to_id": {name: i for i, name in enumerate(COMPOSERS) if i > 0}}
    (prepared_dir / "composers.json").write_text(json.dumps(composers))
    return root
