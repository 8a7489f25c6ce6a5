"""Helpers for the organize/prepare tests: tiny MIDI files built in code with symusic, and fake tokenize outputs."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from symusic import Note, Score, Track

from mozart.config import TokenizeConfig
from mozart.data.tokenize import build_tokenizer


def midi_bytes(seed: int = 0, n_notes: int = 12) -> bytes:
    """A small valid one-track MIDI file; different seeds give different bytes."""
    score = Score(480)
    track = Track(name="piano", program=0)
    for i in range(n_notes):
        track.notes.append(Note(i * 240, 240, 48 + (seed * 7 + i * 5) % 36, 64 + seed % 32))
    score.tracks.append(track)
    return score.dumps_midi()


def write_midi(path: Path, seed: int = 0, n_notes: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(midi_bytes(seed, n_notes))
    return path


def write_tree(root: Path, names: list[str], first_seed: int = 1) -> list[Path]:
    """Write one distinct MIDI file per relative name under `root`."""
    return [write_midi(root / name, seed) for seed, name in enumerate(names, start=first_seed)]


SHARD_SCHEMA = pa.schema([("piece_id", pa.string()), ("composer", pa.string()), ("transpose", pa.int8()),
                          ("tokens", pa.list_(pa.uint16())), ("n_tokens", pa.int32())])


def write_fake_pipeline(root: Path, pieces: list[tuple[str, str, str]], transposes: tuple[int, ...] = (0,),
                        tokenize_rejects: tuple[str, ...] = (), organize_extra: list[dict] | None = None,
                        rows_per_shard: int = 7) -> tuple[Path, Path]:
    """Fake data/organized + data/tokens for prepare: `pieces` = [(piece_id, composer, work_id)] accepted by organize;
    `tokenize_rejects` are piece_ids tokenize rejected; `organize_extra` adds duplicate/rejected manifest rows."""
    organized, tokens = root / "organized", root / "tokens"
    organized.mkdir(parents=True)
    tokens.mkdir(parents=True)
    rows = [{"source_path": f"src/{p}.mid", "piece_id": p, "work_id": w, "composer": c, "title": p,
             "content_hash": f"{i:064x}", "status": "accepted", "reason": "", "out_path": f"{p}.mid"}
            for i, (p, c, w) in enumerate(pieces)]
    rows += organize_extra or []
    pa.Table.from_pylist(rows).to_pandas().to_parquet(organized / "manifest.parquet", index=False)
    manifest = [{"piece_id": p, "status": "rejected" if p in tokenize_rejects else "accepted",
                 "reason": "too short" if p in tokenize_rejects else "", "n_tokens": 0 if p in tokenize_rejects else 10}
                for p, _, _ in pieces]
    pq.write_table(pa.Table.from_pylist(manifest), tokens / "manifest.parquet")
    build_tokenizer(TokenizeConfig()).save(tokens / "tokenizer.json")  # prepare checks the vocabulary size
    shard_rows = [{"piece_id": p, "composer": c, "transpose": t, "tokens": [5 + i % 50] * (10 + i),
                   "n_tokens": 10 + i}
                  for i, (p, c, _) in enumerate(sorted(pieces)) if p not in tokenize_rejects for t in transposes]
    for k in range(0, len(shard_rows), rows_per_shard):
        table = pa.Table.from_pylist(shard_rows[k:k + rows_per_shard], schema=SHARD_SCHEMA)
        pq.write_table(table, tokens / f"shard-{k // rows_per_shard:05d}.parquet")
    return organized, tokens
