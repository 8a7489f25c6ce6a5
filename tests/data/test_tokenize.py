"""Tokenize: encode/decode round trips, and the stage data/organized -> data/tokens (rejections, shards, determinism)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from symusic import Note, Score, Track

from mozart.config import TokenizeConfig
from mozart.errors import DataError
from mozart.data.crops import Transposer
from mozart.data.store import read_vocab_info
from mozart.data.tokenize import build_tokenizer, decode_ids, encode_score, load_tokenizer, tokenize_corpus

TPQ = 480


def make_score(seed: int, n_notes: int = 40, low: int = 48, high: int = 84, two_hands: bool = True) -> Score:
    """A small piano piece on the tokenizer's grid (eighth-note onsets, vocabulary durations), one or two tracks."""
    rng = random.Random(seed)
    score = Score(TPQ)
    right, left = Track("right", 0, False), Track("left", 0, False)
    for i in range(n_notes):
        track = left if two_hands and i % 3 == 0 else right
        track.notes.append(Note(i * TPQ // 2, rng.choice([1, 2, 3, 4]) * TPQ // 4, rng.randint(low, high),
                                rng.choice([40, 64, 100])))
    score.tracks.append(right)
    if two_hands:
        score.tracks.append(left)
    return score


def write_organized(root: Path, pieces: dict[str, Score | bytes]) -> Path:
    """A data/organized-like tree: <Composer>/<piece>.mid + manifest.parquet (all rows accepted, as organize says)."""
    rows = []
    for piece_id, content in pieces.items():
        path = root / f"{piece_id}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.dump_midi(path)
        rows.append({"source_path": str(path), "piece_id": piece_id, "work_id": piece_id,
                     "composer": piece_id.split("/")[0], "title": piece_id.split("/")[1], "content_hash": "",
                     "status": "accepted", "reason": "", "out_path": f"{piece_id}.mid"})
    rows.append({**rows[0], "piece_id": "", "status": "duplicate", "reason": "duplicate", "out_path": ""})
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest.parquet")
    return root


def read_shards(tokens_dir: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(tokens_dir.glob("shard-*.parquet")))


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TokenizeConfig())


# ------------------------------------------------------------------------------------------------- encode / decode

@pytest.mark.parametrize("method", ["REMI", "REMIPlus", "MIDILike"])
def test_encode_decode_encode_is_identical(method):
    tokenizer = build_tokenizer(TokenizeConfig(method=method))
    score = make_score(0)
    ids = encode_score(tokenizer, score)
    assert len(ids) > 40 and all(0 <= i < len(tokenizer) for i in ids)
    decoded = decode_ids(tokenizer, ids)
    assert len(decoded.tracks) == 1 and decoded.tracks[0].program == 0
    assert decoded.note_num() == score.note_num()
    assert encode_score(tokenizer, decoded) == ids


def test_tracks_are_merged_and_input_untouched(tokenizer):
    two_hands = make_score(1)
    one_track = Score(TPQ)
    merged = Track("all", 0, False)
    for track in two_hands.tracks:
        merged.notes.extend(list(track.notes))
    merged.notes.sort()
    one_track.tracks.append(merged)
    drums = Track("drums", 0, True)
    drums.notes.append(Note(0, TPQ, 36, 100))
    with_drums = two_hands.copy()
    with_drums.tracks.append(drums)

    ids = encode_score(tokenizer, two_hands)
    assert ids == encode_score(tokenizer, one_track) == encode_score(tokenizer, with_drums)
    assert len(two_hands.tracks) == 2  # encode_score must not modify its input


def test_encode_decode_encode_on_real_files(tokenizer, shared_corpora):
    files = sorted((shared_corpora / "piano-midi-de").rglob("*.mid"))[:2] + sorted(
        (shared_corpora / "asap").rglob("*.mid"))[:1]
    assert files, f"no MIDI files under {shared_corpora}"
    for path in files:
        ids = encode_score(tokenizer, Score(str(path)))
        assert len(ids) > 100, path
        assert encode_score(tokenizer, decode_ids(tokenizer, ids)) == ids, path


@pytest.mark.parametrize("method", ["REMI", "REMIPlus", "MIDILike"])
def test_decode_never_raises_on_model_like_output(method):
    tokenizer = build_tokenizer(TokenizeConfig(method=method, use_tempos=True))
    rng = random.Random(0)
    ids = encode_score(tokenizer, make_score(2))
    garbage = [rng.randrange(len(tokenizer)) for _ in range(300)]
    cases = [[], [0, 0, 0], [1] + ids + [2, 0, 0], garbage, ids[:17], [len(tokenizer) + 5, -1] + ids]
    for case in cases:
        assert isinstance(decode_ids(tokenizer, case), Score)
    # Specials and out-of-vocabulary ids are skipped: the music is unchanged.
    assert encode_score(tokenizer, decode_ids(tokenizer, [1] + ids + [2, 0, 0])) == ids


# ---------------------------------------------------------------------------------------------------------- stage

def small_corpus(root: Path) -> Path:
    return write_organized(root, {
        "Bach/prelude": make_score(10),
        "Chopin/etude": make_score(11, n_notes=25),
        "Chopin/waltz": make_score(12, two_hands=False),
        "Mozart/high": make_score(13, low=100, high=106),  # +3 semitones would leave the piano range (108)
        "Mozart/corrupt": b"MThd\x00\x00\x00\x06garbage that is not a MIDI file",
        "Mozart/empty": b"",
    })


def test_stage_rejects_bad_files_with_reasons_and_completes(tmp_path):
    organized = small_corpus(tmp_path / "organized")
    summary = tokenize_corpus(organized, tmp_path / "tokens", TokenizeConfig(n_jobs=2), progress=False)
    assert (summary.n_files, summary.n_tokenized, summary.n_rejected) == (6, 4, 2)
    assert "4 tokenized, 2 rejected" in summary.line()

    manifest = pq.read_table(tmp_path / "tokens" / "manifest.parquet").to_pylist()
    by_id = {r["piece_id"]: r for r in manifest}
    assert set(by_id) == {"Bach/prelude", "Chopin/etude", "Chopin/waltz", "Mozart/high", "Mozart/corrupt",
                          "Mozart/empty"}  # one row per accepted organize file, duplicates excluded
    assert by_id["Mozart/empty"]["reason"] == "empty file"
    assert by_id["Mozart/corrupt"]["reason"].startswith("not a MIDI file")
    assert {r["status"] for r in manifest if r["reason"] == ""} == {"accepted"}

    shards = read_shards(tmp_path / "tokens")
    assert shards.schema.field("tokens").type == pa.list_(pa.uint16())
    assert shards.schema.field("transpose").type == pa.int8()
    assert shards.schema.field("n_tokens").type == pa.int32()
    rows = shards.to_pylist()
    assert [r["piece_id"] for r in rows] == sorted(r["piece_id"] for r in rows)  # sorted, untransposed only
    assert sum(r["n_tokens"] for r in rows) == summary.n_tokens
    tokenizer = load_tokenizer(tmp_path / "tokens" / "tokenizer.json")
    for row in rows:
        assert row["n_tokens"] == len(row["tokens"]) == by_id[row["piece_id"]]["n_tokens"]
        assert row["composer"] == row["piece_id"].split("/")[0]
    prelude = next(r for r in rows if r["piece_id"] == "Bach/prelude")
    assert prelude["tokens"] == encode_score(tokenizer, make_score(10))  # what the stage stores = encode_score


def test_transpositions_are_recorded_not_stored_and_crop_shifts_equal_transposed_encodings(tmp_path):
    organized = small_corpus(tmp_path / "organized")
    cfg = TokenizeConfig(transpose=[3, -2, 0], n_jobs=2)
    summary = tokenize_corpus(organized, tmp_path / "tokens", cfg, progress=False)
    rows = read_shards(tmp_path / "tokens").to_pylist()
    assert {r["transpose"] for r in rows} == {0} and summary.n_rows == len(rows) == 4  # one row per piece
    assert json.loads((tmp_path / "tokens" / "augment.json").read_text()) == {"transpose": [-2, 3]}

    # the training sampler's shift of a piece's tokens is exactly the encoding of the transposed piece
    tokenizer = build_tokenizer(cfg)
    transposer = Transposer(read_vocab_info(tmp_path / "tokens" / "tokenizer.json"), [-2, 3])
    scores = {"Bach/prelude": make_score(10), "Mozart/high": make_score(13, low=100, high=106)}
    for piece_id, score in scores.items():
        tokens = np.array(next(r["tokens"] for r in rows if r["piece_id"] == piece_id))
        for k, offset in enumerate(transposer.offsets):
            shifted = transposer.shift[k][tokens]
            if piece_id == "Mozart/high" and offset == 3:  # 106 + 3 > 108: out of range, marked -1
                assert (shifted == -1).any()
                continue
            assert shifted.tolist() == encode_score(tokenizer, score.shift_pitch(int(offset)))
    high = np.array([next(r["tokens"] for r in rows if r["piece_id"] == "Mozart/high")] * 64)
    crops = transposer(np.random.default_rng(0), high)
    assert (crops >= 0).all()  # +3 is never drawn for this piece
    assert {int(transposer.pitch_of[c].max() - transposer.pitch_of[high[0]].max()) for c in crops} == {-2, 0}


def test_shards_are_byte_identical_on_rerun_and_respect_rows_per_shard(tmp_path):
    organized = small_corpus(tmp_path / "organized")
    cfg = TokenizeConfig(rows_per_shard=3, n_jobs=2)
    for run in ("a", "b"):
        tokenize_corpus(organized, tmp_path / run, cfg, progress=False)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    sizes = [pq.read_metadata(p).num_rows for p in sorted((tmp_path / "a").glob("shard-*.parquet"))]
    assert sizes == [3, 1]  # 4 pieces
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic swap left no temp folder


def test_rerun_replaces_previous_output_whole(tmp_path):
    organized = small_corpus(tmp_path / "organized")
    tokenize_corpus(organized, tmp_path / "tokens", TokenizeConfig(rows_per_shard=1, n_jobs=1), progress=False)
    assert len(list((tmp_path / "tokens").glob("shard-*.parquet"))) == 4
    tokenize_corpus(organized, tmp_path / "tokens", TokenizeConfig(rows_per_shard=100, n_jobs=1), progress=False)
    assert [p.name for p in (tmp_path / "tokens").glob("shard-*.parquet")] == ["shard-00000.parquet"]


def test_missing_or_useless_organized_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="organize"):
        tokenize_corpus(tmp_path / "nothing", tmp_path / "tokens", TokenizeConfig(), progress=False)
    organized = write_organized(tmp_path / "organized", {"A/bad": b"", "A/worse": b"junk"})
    with pytest.raises(DataError, match="manifest.parquet"):
        tokenize_corpus(organized, tmp_path / "tokens", TokenizeConfig(n_jobs=1), progress=False)
    reasons = pq.read_table(tmp_path / "tokens" / "manifest.parquet").column("reason").to_pylist()
    assert reasons[0] == "empty file" and reasons[1].startswith("not a MIDI file")
