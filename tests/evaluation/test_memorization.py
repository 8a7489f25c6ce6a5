"""mozart.evaluation.memorization: the longest run of bars a piece copies from the training split."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mozart.evaluation import memorization
from mozart.evaluation.memorization import (BarVocab, CopyRun, build_index, copied_runs, copy_rates,
                                            longest_copied_run, train_index)


@pytest.fixture(scope="module")
def tokenizer():
    from mozart.config import TokenizeConfig
    from mozart.data.tokenize import build_tokenizer

    return build_tokenizer(TokenizeConfig())


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return BarVocab.from_vocab(tokenizer.vocab)


def encode(tokenizer, bars) -> list[int]:
    """REMI ids of bars given as lists of (position, pitch) onsets: Bar, then Position / Pitch Velocity Duration."""
    v = tokenizer.vocab
    velocity = next(i for name, i in v.items() if name.startswith("Velocity_"))
    duration = next(i for name, i in v.items() if name.startswith("Duration_"))
    ids = [v["BOS_None"]]
    for onsets in bars:
        ids.append(v["Bar_None"])
        for position in sorted({p for p, _ in onsets}):
            ids.append(v[f"Position_{position}"])
            for pitch in sorted(q for p, q in onsets if p == position):
                ids += [v[f"Pitch_{pitch}"], velocity, duration]
    return ids + [v["EOS_None"]]


def random_bars(rng: np.random.Generator, n: int) -> list[list[tuple[int, int]]]:
    """Bars of 3 to 7 onsets anywhere on the 32-position grid, pitches 40..80."""
    return [[(int(rng.integers(0, 32)), int(rng.integers(40, 81))) for _ in range(int(rng.integers(3, 8)))]
            for _ in range(n)]


def shifted(bars, semitones) -> list[list[tuple[int, int]]]:
    """Each bar transposed by its own entry of `semitones` (or all by one number)."""
    shifts = semitones if isinstance(semitones, (list, tuple)) else [semitones] * len(bars)
    return [[(p, q + s) for p, q in bar] for bar, s in zip(bars, shifts)]


@pytest.fixture(scope="module")
def corpus(tokenizer, vocab):
    """Ten random 12-bar training pieces known as metadata rows 100..109, and their index."""
    rng = np.random.default_rng(7)
    pieces = [random_bars(rng, 12) for _ in range(10)]
    rows = list(range(100, 110))
    return pieces, rows, build_index([np.array(encode(tokenizer, p)) for p in pieces], rows, vocab)


def test_a_planted_transposed_copy_of_five_bars_is_found_exactly(tokenizer, corpus):
    pieces, rows, index = corpus
    rng = np.random.default_rng(1)
    planted = random_bars(rng, 3) + shifted(pieces[6][4:9], 3) + random_bars(rng, 4)
    run = longest_copied_run(index, encode(tokenizer, planted))
    assert run == CopyRun(5, rows[6], 4, 3)  # 5 bars of row 106 from its bar 4, starting at the sample's bar 3


def test_bars_matching_under_different_shifts_are_not_one_run(tokenizer, corpus):
    pieces, rows, index = corpus
    rng = np.random.default_rng(2)
    inconsistent = random_bars(rng, 2) + shifted(pieces[6][4:9], [3, 5, 3, 5, 3]) + random_bars(rng, 2)
    run = longest_copied_run(index, encode(tokenizer, inconsistent))
    assert run.n_bars == 1 and run.train_row == rows[6]  # every bar matches alone, no two in a row


def test_a_fresh_random_piece_copies_at_most_one_bar(tokenizer, corpus):
    _, _, index = corpus
    runs = copied_runs(index, [encode(tokenizer, random_bars(np.random.default_rng(s), 16)) for s in range(10, 15)])
    assert all(r.n_bars <= 1 for r in runs)
    assert longest_copied_run(index, encode(tokenizer, [])) == CopyRun(0, None)


def test_bars_with_fewer_than_two_notes_neither_count_nor_break_a_run(tokenizer, corpus):
    pieces, rows, index = corpus
    copy = shifted(pieces[2][1:6], -2)
    with_gaps = copy[:2] + [[]] + copy[2:4] + [[(0, 60)]] + copy[4:]  # an empty and a one-note bar inside
    run = longest_copied_run(index, encode(tokenizer, with_gaps))
    assert run.n_bars == 5 and run.train_row == rows[2] and run.piece_bar == 0
    assert memorization.MIN_NOTES == 2


def test_a_crop_looks_only_at_the_first_bars(tokenizer, corpus):
    pieces, rows, index = corpus
    ids = encode(tokenizer, pieces[0])
    assert longest_copied_run(index, ids) == CopyRun(12, rows[0], 0, 0)
    assert longest_copied_run(index, ids, max_bars=3).n_bars == 3


def test_indexing_in_small_chunks_gives_the_same_index(tokenizer, vocab, corpus, monkeypatch):
    pieces, rows, index = corpus
    monkeypatch.setattr(memorization, "CHUNK_TOKENS", 50)  # a chunk boundary inside almost every piece pair
    chunked = build_index([np.array(encode(tokenizer, p)) for p in pieces], rows, vocab)
    for name in ("key", "row", "ordinal", "bar", "low"):
        assert np.array_equal(getattr(chunked, name), getattr(index, name)), name
    assert chunked.summary()["bars"] == 120 and chunked.n_pieces == 10


def test_copy_rates_count_shares_of_pieces_at_two_and_four_bars():
    rates = copy_rates([CopyRun(0, None), 1, CopyRun(2, 5), 3, CopyRun(4, 9), 6])
    assert rates["copy2_share"] == pytest.approx(4 / 6) and rates["copy4_share"] == pytest.approx(2 / 6)
    assert rates["max_bars"] == 6 and rates["mean_bars"] == pytest.approx(16 / 6) and rates["n_pieces"] == 6
    empty = copy_rates([])
    assert math.isnan(empty["copy4_share"]) and empty["max_bars"] == 0 and empty["n_pieces"] == 0


def test_train_index_reads_only_original_train_pieces_from_the_store(tmp_path, tokenizer, vocab):
    import pandas as pd

    from mozart.data.store import TokenStoreReader, VocabInfo, write_store

    rng = np.random.default_rng(3)
    pieces = [random_bars(rng, 8) for _ in range(4)]
    splits = ["train", "train", "test", "train"]
    store_rows = write_store(tmp_path, splits, [encode(tokenizer, p) for p in pieces], [1] * 4,
                             VocabInfo(len(tokenizer), 0, 1, 2, {}))
    meta = pd.DataFrame({"split": splits + ["train"], "transpose": [0, 0, 0, 0, 2], "composer_id": [1] * 5,
                         "store_row": store_rows + [store_rows[1]]})
    meta.loc[4, "store_row"] = store_rows[1]
    reader = TokenStoreReader(tmp_path)
    index = train_index(meta, reader, vocab, seed=0)
    assert sorted(set(index.row.tolist())) == [0, 1, 3] and not index.capped  # not the test piece, not row 4
    assert longest_copied_run(index, encode(tokenizer, shifted(pieces[3], 7))) == CopyRun(8, 3, 0, 0)
    assert longest_copied_run(index, encode(tokenizer, pieces[2])).n_bars <= 1  # test pieces are not the reference
    capped = train_index(meta, reader, vocab, seed=0, max_tokens=len(encode(tokenizer, pieces[0])) + 5)
    assert capped.capped and capped.n_pieces == 1
