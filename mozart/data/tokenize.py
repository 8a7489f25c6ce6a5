"""MIDI <-> token ids with miditok, and the tokenize stage: data/organized -> data/tokens (see docs/CONTRACTS.md).

Public API reused by other stages:
    build_tokenizer(cfg)            -> miditok tokenizer, every setting pinned from TokenizeConfig
    load_tokenizer(path)            -> the tokenizer saved in tokenizer.json (REMI or MIDILike, by its "tokenization")
    encode_score(tokenizer, score)  -> list[int] (no BOS/EOS: the model's data loader adds them)
    decode_ids(tokenizer, ids)      -> symusic.Score (skips special/ungrammatical tokens, never raises)
    tokenize_corpus(organized_dir, tokens_dir, cfg) -> TokenizeSummary

All tracks are merged into one piano track (program 0) before encoding; drum tracks are dropped.
`tokenize.method` mapping (miditok 3 has no REMIPlus class; its REMI docstring says REMI with Program and
TimeSignature tokens *is* REMI+ from FIGARO):
    REMI      -> miditok.REMI
    REMIPlus  -> miditok.REMI(use_programs=True, one_token_stream_for_programs=True, use_time_signatures=True)
    MIDILike  -> miditok.MIDILike
`tokenize.transpose` offsets are written to augment.json, not encoded: training shifts the pitch tokens of its crops.
Writing shards streams: files are encoded in sorted piece_id order by isolated workers (mozart.infra.isolate), whose
outcomes arrive in that order, and a shard is written each time `rows_per_shard` rows are full.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mozart.data.store import AUGMENT_FILE, check_vocab_fits
from mozart.infra.atomic import atomic_dir, write_json
from mozart.config import TokenizeConfig
from mozart.errors import DataError, MozartError
from mozart.infra.isolate import Rejected, imap_isolated, read_midi

SPECIAL_TOKENS = ["PAD", "BOS", "EOS"]  # PAD first: id 0
TOKENIZER_FILE = "tokenizer.json"
SHARD_SCHEMA = pa.schema([
    ("piece_id", pa.string()),
    ("composer", pa.string()),
    ("transpose", pa.int8()),
    ("tokens", pa.list_(pa.uint16())),
    ("n_tokens", pa.int32()),
])
MANIFEST_SCHEMA = pa.schema([
    ("piece_id", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("n_tokens", pa.int32()),
])


# ------------------------------------------------------------------------------------------------------ tokenizer API

def _miditok() -> Any:
    """Import miditok without its optional torch helpers when torch is not loaded yet.

    `import miditok` tries `import torch` for miditok.pytorch_data (unused here): ~1 s and ~180 MB per process.
    A None entry in sys.modules makes that attempt fail fast; it is removed at once, so a later `import torch`
    works normally.
    """
    if "miditok" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            import miditok  # noqa: F401
        finally:
            del sys.modules["torch"]
    import miditok

    return miditok


def beat_res(positions_per_beat: int) -> dict[tuple[int, int], int]:
    """The seed's grid: full resolution for the first 4 beats, half of it up to 12 beats (durations, rests)."""
    return {(0, 4): positions_per_beat, (4, 12): max(1, positions_per_beat // 2)}


def build_tokenizer(cfg: TokenizeConfig) -> Any:
    """A miditok tokenizer with every setting pinned here, so a miditok default change cannot alter our vocab."""
    miditok = _miditok()

    if not 0 <= cfg.pitch_min < cfg.pitch_max <= 127:
        raise MozartError(f"params.yaml: tokenize.pitch_min/pitch_max = {cfg.pitch_min}/{cfg.pitch_max} must satisfy "
                          "0 <= pitch_min < pitch_max <= 127 (piano: 21 and 108)")
    if cfg.positions_per_beat < 1 or not 1 <= cfg.num_velocities <= 127:
        raise MozartError("params.yaml: tokenize.positions_per_beat must be >= 1 and tokenize.num_velocities in 1..127")
    remi_plus = cfg.method == "REMIPlus"
    config = miditok.TokenizerConfig(
        pitch_range=(cfg.pitch_min, cfg.pitch_max),  # inclusive on both ends in miditok 3
        beat_res=beat_res(cfg.positions_per_beat),
        num_velocities=cfg.num_velocities,
        special_tokens=list(SPECIAL_TOKENS),
        encode_ids_split="no",
        use_velocities=True,
        use_chords=False,
        use_rests=False,
        use_tempos=cfg.use_tempos,
        num_tempos=32,
        tempo_range=(40, 250),
        log_tempos=False,
        use_time_signatures=cfg.use_time_signatures or remi_plus,
        use_key_signatures=False,
        use_sustain_pedals=False,
        use_pitch_bends=False,
        use_control_changes=False,
        use_programs=remi_plus,
        one_token_stream_for_programs=remi_plus,
        program_changes=False,
        use_pitch_intervals=False,
        use_pitchdrum_tokens=False,
        remove_duplicated_notes=False,
    )
    classes = {"REMI": miditok.REMI, "REMIPlus": miditok.REMI, "MIDILike": miditok.MIDILike}
    if cfg.method not in classes:
        raise MozartError(f"params.yaml: tokenize.method = {cfg.method!r} is not one of {', '.join(classes)}")
    tokenizer = classes[cfg.method](config)
    assert tokenizer.pad_token_id == 0, "PAD must be id 0"
    return tokenizer


def load_tokenizer(path: str | Path) -> Any:
    """Reload a tokenizer.json written by the tokenize stage (any miditok class named in its "tokenization")."""
    miditok = _miditok()
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    try:
        name = json.loads(path.read_text())["tokenization"]
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the tokenize stage first (dvc repro tokenize)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{path} is not a miditok tokenizer file: rerun the tokenize stage") from None
    cls = getattr(miditok, name, None)
    if cls is None:
        raise DataError(f"{path}: unknown tokenization {name!r} (written by another miditok version?)")
    return cls(params=path)


def merge_to_piano(score: Any) -> Any:
    """A new Score with every non-drum note in one piano track (program 0); tempos/time signatures kept."""
    from symusic import Note, Score, Track

    merged = Score(score.ticks_per_quarter)
    merged.tempos = score.tempos.copy()
    merged.time_signatures = score.time_signatures.copy()
    merged.key_signatures = score.key_signatures.copy()
    track = Track("Piano", 0, False)
    parts = [t.notes.numpy() for t in score.tracks if not t.is_drum and t.note_num() > 0]
    if parts:
        soa = {k: np.concatenate([p[k] for p in parts]) for k in ("time", "duration", "pitch", "velocity")}
        track.notes = Note.from_numpy(**soa)
        if len(parts) > 1:
            track.notes.sort()
    merged.tracks.append(track)
    return merged


def _ids_of(tokenizer: Any, encoded: Any) -> list[int]:
    seq = encoded if not isinstance(encoded, list) else (encoded[0] if encoded else None)
    return list(seq.ids) if seq is not None else []


def encode_score(tokenizer: Any, score: Any) -> list[int]:
    """Token ids of a symusic Score, all tracks merged into one piano stream. The input score is not modified."""
    return _ids_of(tokenizer, tokenizer.encode(merge_to_piano(score)))


def decode_ids(tokenizer: Any, ids: Iterable[int]) -> Any:
    """A symusic Score from token ids. PAD/BOS/EOS and out-of-vocabulary ids are dropped; never raises.

    miditok's decoders skip tokens that do not fit the grammar; if one still fails on a malformed sequence, the
    sequence is cut back to its longest decodable prefix of whole bars, and at worst an empty piano Score returned.
    """
    from symusic import Score, Track

    special = set(tokenizer.special_tokens_ids)
    ids = [int(i) for i in ids if 0 <= int(i) < len(tokenizer) and int(i) not in special]
    bar_ids = {i for name, i in tokenizer.vocab.items() if name.startswith("Bar_")}
    attempts = [ids]
    cuts = [k for k, i in enumerate(ids) if i in bar_ids]
    attempts += [ids[:k] for k in reversed(cuts) if 0 < k < len(ids)]
    for attempt in attempts:
        try:
            return tokenizer.decode(attempt if tokenizer.one_token_stream else [attempt])
        except Exception:  # noqa: BLE001 - decoding model output must not crash sampling/evaluation
            continue
    empty = Score(tokenizer.time_division)
    empty.tracks.append(Track("Piano", 0, False))
    return empty


# -------------------------------------------------------------------------------------------------- per-file worker

class FileEncoder:
    """Worker function: a MIDI path -> uint16 token ids of the piece. Raises Rejected.

    Transposition (`tokenize.transpose`) is not encoded here: the offsets go to augment.json and the training crop
    sampler shifts the pitch tokens of each crop (mozart.data.crops.Transposer), so no transposed copy is stored.
    """

    def __init__(self, cfg: TokenizeConfig, tokenizer: Any | None = None):
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(cfg)

    def __call__(self, path: str | Path) -> np.ndarray:
        tok = self.tokenizer
        score = tok.preprocess_score(merge_to_piano(read_midi(path)))
        if score.note_num() == 0:
            raise Rejected(f"no notes in pitch range {self.cfg.pitch_min}-{self.cfg.pitch_max}")
        ids = _ids_of(tok, tok.encode(score, no_preprocess_score=True))
        if not ids:
            raise Rejected("no notes")
        return np.asarray(ids, dtype=np.uint16)  # compact to send back to the parent process (vocab checked < 65536)


# ------------------------------------------------------------------------------------------------------------- stage

@dataclass(frozen=True)
class TokenizeSummary:
    n_files: int
    n_tokenized: int
    n_rejected: int
    n_rows: int
    n_tokens: int  # untransposed tokens over tokenized files
    n_shards: int

    def line(self) -> str:
        return (f"{self.n_tokenized} tokenized, {self.n_rejected} rejected (see data/tokens/manifest.parquet), "
                f"{self.n_tokens:,} tokens ({self.n_rows} rows, {self.n_shards} shards)")


def read_accepted(organized_dir: Path) -> list[tuple[str, str, Path]]:
    """(piece_id, composer, midi path) of the accepted organize rows, sorted by piece_id."""
    manifest = organized_dir / "manifest.parquet"
    if not manifest.is_file():
        raise DataError(f"{manifest} not found: run the organize stage first (dvc repro organize)")
    try:
        table = pq.read_table(manifest, columns=["piece_id", "composer", "status", "out_path"]).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{manifest} is unreadable or lacks piece_id/composer/status/out_path ({exc}): "
                        "rerun the organize stage") from None
    rows = sorted((r["piece_id"], r["composer"], organized_dir / r["out_path"])
                  for r in table if r["status"] == "accepted")
    if not rows:
        raise DataError(f"{manifest} lists no accepted files: check organize.source and the organize report")
    return rows


def _deterministic_parquet(table: pa.Table, path: Path) -> None:
    # Fixed compression/options and no pandas metadata: identical input -> byte-identical file.
    pq.write_table(table, path, compression="zstd", compression_level=3, use_dictionary=["piece_id", "composer"],
                   write_statistics=True)


class ShardWriter:
    """Buffers at most `rows_per_shard` rows, writes shard-00000.parquet, shard-00001.parquet, ..."""

    def __init__(self, out_dir: Path, rows_per_shard: int):
        if rows_per_shard < 1:
            raise MozartError(f"params.yaml: tokenize.rows_per_shard must be >= 1, got {rows_per_shard}")
        self.out_dir, self.rows_per_shard = out_dir, rows_per_shard
        self.rows: list[tuple[str, str, int, np.ndarray]] = []
        self.n_shards = 0
        self.n_rows = 0

    def add(self, piece_id: str, composer: str, transpose: int, ids: np.ndarray) -> None:
        self.rows.append((piece_id, composer, transpose, ids))
        if len(self.rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        piece_ids, composers, transposes, token_arrays = zip(*self.rows)
        lengths = np.array([len(a) for a in token_arrays], dtype=np.int32)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(token_arrays), pa.uint16()))
        table = pa.Table.from_arrays([
            pa.array(piece_ids, pa.string()), pa.array(composers, pa.string()),
            pa.array(transposes, pa.int8()), tokens, pa.array(lengths, pa.int32()),
        ], schema=SHARD_SCHEMA)
        _deterministic_parquet(table, self.out_dir / f"shard-{self.n_shards:05d}.parquet")
        self.n_shards += 1
        self.n_rows += len(self.rows)
        self.rows = []


def tokenize_files(files: Sequence[tuple[str, str, Path]], out_dir: Path, cfg: TokenizeConfig,
                   progress: bool = True) -> TokenizeSummary:
    """Encode (piece_id, composer, path) files into `out_dir` (which must exist): tokenizer, shards, manifest."""
    tokenizer = build_tokenizer(cfg)  # built once here; forked workers inherit it
    check_vocab_fits(len(tokenizer), "params.yaml: tokenize")
    tokenizer.save(out_dir / TOKENIZER_FILE)
    write_json(out_dir / AUGMENT_FILE, {"transpose": sorted({int(o) for o in cfg.transpose} - {0})})
    writer = ShardWriter(out_dir, cfg.rows_per_shard)
    manifest: dict[str, list] = {name: [] for name in MANIFEST_SCHEMA.names}
    n_ok = n_tokens = 0
    outcomes = imap_isolated(FileEncoder(cfg, tokenizer), [str(path) for _, _, path in files], n_jobs=cfg.n_jobs,
                             timeout_s=cfg.timeout_s, desc="tokenize", progress=progress)
    for (piece_id, composer, _path), outcome in zip(files, outcomes):
        n_first = len(outcome.value) if outcome.ok else 0
        manifest["piece_id"].append(piece_id)
        manifest["status"].append("accepted" if outcome.ok else "rejected")
        manifest["reason"].append(outcome.reason)
        manifest["n_tokens"].append(n_first)
        if outcome.ok:
            n_ok += 1
            n_tokens += n_first
            writer.add(piece_id, composer, 0, outcome.value)
    writer.flush()
    _deterministic_parquet(pa.Table.from_pydict(manifest, schema=MANIFEST_SCHEMA), out_dir / "manifest.parquet")
    return TokenizeSummary(len(files), n_ok, len(files) - n_ok, writer.n_rows, n_tokens, writer.n_shards)


def tokenize_corpus(organized_dir: str | Path, tokens_dir: str | Path, cfg: TokenizeConfig,
                    progress: bool = True) -> TokenizeSummary:
    """The tokenize stage: data/organized (manifest + MIDI files) -> data/tokens, replaced atomically as a whole."""
    files = read_accepted(Path(organized_dir))
    with atomic_dir(tokens_dir) as tmp:
        summary = tokenize_files(files, tmp, cfg, progress)
    if summary.n_tokenized == 0:  # after the swap so the manifest with every reason is there to read
        raise DataError(f"no file could be tokenized; the reasons are in {Path(tokens_dir) / 'manifest.parquet'}")
    return summary


def run(cfg: TokenizeConfig, seed: int | None, paths) -> dict:
    """The tokenize stage (stage contract: mozart/paths.py TokenizePaths): data/organized -> data/tokens.
    Deterministic (no seed). Returns the TokenizeSummary fields."""
    return dataclasses.asdict(tokenize_corpus(paths.organized_dir, paths.tokens_dir, cfg))
