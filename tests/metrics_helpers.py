"""Fixtures for the evaluation tests: hand-built symusic Scores and a tiny but complete evaluate-stage workspace."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TPQ = 480
BAR = 4 * TPQ  # a 4/4 bar in ticks
COPIED_BARS = 6  # the stage workspace's unconditional sample copies this many bars of a train piece


def make_score(notes, tpq: int = TPQ, time_signatures=(), n_tracks: int = 1):
    """A Score from (onset_tick, duration_tick, pitch) triples, dealt round-robin over `n_tracks` tracks;
    time_signatures are (tick, numerator, denominator)."""
    from symusic import Note, Score, TimeSignature, Track

    score = Score(tpq)
    tracks = [Track(f"t{i}", 0, False) for i in range(n_tracks)]
    for i, (onset, duration, pitch) in enumerate(notes):
        tracks[i % n_tracks].notes.append(Note(int(onset), int(duration), int(pitch), 80))
    for t in tracks:
        score.tracks.append(t)
    for tick, num, den in time_signatures:
        score.time_signatures.append(TimeSignature(int(tick), int(num), int(den)))
    return score


def random_notes(rng: np.random.Generator, n_bars: int, tpq: int = TPQ, density: float = 8.0,
                 empty_bar_p: float = 0.2, off_grid: bool = True) -> list[tuple[int, int, int]]:
    """Random notes over n_bars 4/4 bars: some empty bars, onsets anywhere (off the grid too), duplicates possible."""
    bar = 4 * tpq
    notes = []
    for b in range(n_bars):
        if rng.random() < empty_bar_p:
            continue
        for _ in range(rng.poisson(density)):
            offset = int(rng.integers(0, bar)) if off_grid else int(rng.integers(0, 16)) * bar // 16
            notes.append((b * bar + offset, int(rng.integers(1, 2 * tpq)), int(rng.integers(21, 109))))
    return notes


def styled_notes(rng: np.random.Generator, composer: int, n_bars: int) -> list[tuple[int, int, int]]:
    """Three clearly different toy 'composers': 0 = diatonic quarter notes low, 1 = chromatic eighth-note chords high,
    2 = half-note major triads in the middle."""
    notes = []
    for b in range(n_bars):
        if composer == 2:
            for half in range(2):
                root = int(rng.choice([60, 62, 65, 67]))
                notes += [(b * BAR + half * 2 * TPQ, 2 * TPQ, root + step) for step in (0, 4, 7)]
            continue
        for step in range(4 if composer == 0 else 8):
            onset = b * BAR + step * (TPQ if composer == 0 else TPQ // 2)
            if composer == 0:
                notes.append((onset, TPQ, int(rng.choice([48, 50, 52, 53, 55, 57, 59]))))
            else:
                root = int(rng.integers(66, 84))
                notes += [(onset, TPQ // 2, root), (onset, TPQ // 2, root + 1)]
    return notes


def build_stage_workspace(root: Path, seed: int = 0) -> dict:
    """data/tokens, data/prepared, models/final and data/samples for the evaluate stage, all tiny.

    Two composers (ids 1, 2), 6 pieces each (4 train, 1 val, 1 test); a random 1-layer model; samples: free with and
    without CFG per composer, one unconditional (a planted copy: the first COPIED_BARS bars of train piece Alpha/p0,
    3 semitones up), one continuation, and one that is not a readable MIDI file. Readable samples carry their real
    token ids, as the sample stage writes them.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mozart.infra.atomic import write_json
    from mozart.config import TokenizeConfig
    from mozart.model.gpt import GPTConfig, MozartGPT, save_model
    from mozart.data.store import read_vocab_info, write_store
    from mozart.data.tokenize import build_tokenizer, encode_score

    rng = np.random.default_rng(seed)
    tokens_dir, prepared, samples_dir = root / "data" / "tokens", root / "data" / "prepared", root / "data" / "samples"
    for d in (tokens_dir, prepared, samples_dir):
        d.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(TokenizeConfig())
    tokenizer.save(tokens_dir / "tokenizer.json")
    names = ["<unconditional>", "Alpha", "Beta"]
    write_json(prepared / "composers.json", {"unconditional_id": 0, "other_id": None, "names": names,
                                             "n_pieces": [0, 6, 6], "composer_to_id": {"Alpha": 1, "Beta": 2}})
    shard_rows, meta_rows, piece_notes = [], [], {}
    for composer_id in (1, 2):
        for k, split in enumerate(["train"] * 4 + ["val", "test"]):
            notes = styled_notes(rng, composer_id - 1, int(rng.integers(12, 20)))
            ids = encode_score(tokenizer, make_score(notes))
            piece_id = f"{names[composer_id]}/p{k}"
            piece_notes[piece_id] = notes
            meta_rows.append({"piece_id": piece_id, "work_id": piece_id, "composer": names[composer_id],
                              "composer_id": composer_id, "split": split, "transpose": 0, "n_tokens": len(ids),
                              "shard": "shard-00000.parquet", "row": len(shard_rows)})
            shard_rows.append({"piece_id": piece_id, "composer": names[composer_id], "transpose": 0,
                               "tokens": ids, "n_tokens": len(ids)})
    pq.write_table(pa.Table.from_pylist(shard_rows), tokens_dir / "shard-00000.parquet")
    store_rows = write_store(prepared, [m["split"] for m in meta_rows], [r["tokens"] for r in shard_rows],
                             [m["composer_id"] for m in meta_rows], read_vocab_info(tokens_dir / "tokenizer.json"))
    for m, store_row in zip(meta_rows, store_rows):
        m["store_row"] = store_row
    pd.DataFrame(meta_rows).to_parquet(prepared / "metadata.parquet")

    config = GPTConfig(n_layer=1, d_model=32, n_head=2, d_ff=64, context=128, dropout=0.0,
                       vocab_size=len(tokenizer), n_composers=3, pad_id=tokenizer.pad_token_id,
                       bos_id=tokenizer.vocab["BOS_None"], eos_id=tokenizer.vocab["EOS_None"])
    save_model(MozartGPT(config), root / "models" / "final", tokens_dir / "tokenizer.json",
               prepared / "composers.json")

    samples = []

    def add(kind: str, composer_id: int, cfg_scale: float, notes, readable: bool = True) -> None:
        sample_id = f"s{len(samples):02d}"
        path = samples_dir / f"{sample_id}.mid"
        token_ids = [1, 2]  # what an unreadable sample's ids look like: no bars
        if readable:
            make_score(notes).dump_midi(str(path))
            token_ids = encode_score(tokenizer, make_score(notes))
        else:
            path.write_bytes(b"not a midi file")
        samples.append({"id": sample_id, "kind": kind, "composer": names[composer_id], "composer_id": composer_id,
                        "cfg_scale": cfg_scale, "temperature": 1.0, "top_k": 0, "top_p": 0.95,
                        "repetition_penalty": 1.1, "bpm": 120, "n_bars": 8, "n_tokens": 100, "seconds": 1.0,
                        "decodable": readable, "path": path.name, "token_ids": token_ids,
                        "prompt_piece_id": None, "prompt_bars": None})

    for composer_id in (1, 2):
        for cfg_scale in (1.5, 1.0):
            add("free", composer_id, cfg_scale, styled_notes(rng, composer_id - 1, 8))
    add("free", 0, 1.0, [(t, d, p + 3) for t, d, p in piece_notes["Alpha/p0"] if t < COPIED_BARS * BAR])
    add("continuation", 1, 1.5, styled_notes(rng, 0, 12))
    add("free", 2, 1.5, [], readable=False)
    write_json(samples_dir / "manifest.json", {"settings": {"seed": seed, "model_dir": "models/final"},
                                               "samples": samples})
    return {"names": names, "samples": samples}


def read_tsv(path: Path) -> list[dict]:
    lines = Path(path).read_text().strip().split("\n")
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
