"""Memorization check: the longest run of consecutive bars a piece copies verbatim from some training piece.

Works on REMI token ids (no MIDI decoding): a piece is cut into bars at `Bar_*` tokens and a bar becomes the set of
its (position, pitch) onsets; durations and velocities are ignored. A bar is stored as its onsets with pitches
relative to the bar's lowest pitch, plus that lowest pitch. Two runs of bars match when every bar's relative onsets
are equal *and* the transposition (query lowest pitch - train lowest pitch) is the same for the whole run, so a
passage copied a third higher counts, but bars that each match under a different shift are not one copied run.

Bars with fewer than MIN_NOTES distinct onsets (empty bars, one held note) neither count nor break a run: they are
dropped from both sides before matching, because a one-note bar matches thousands of training bars by chance and an
empty bar matches all empty bars. A run's length is therefore counted in bars with at least MIN_NOTES onsets.

Index: every training bar's onset set is hashed to 64 bits (an order-free sum of mixed onset codes, so the set needs
no sorting), and (hash, piece row, bar ordinal, lowest pitch) are kept in arrays sorted by hash. A query looks each of
its bars up with `searchsorted` and gathers every match (query bar j, train piece p, train ordinal i, shift s).
The longest run is the dynamic programme L(j, p, i, s) = 1 + L(j - 1, p, i - 1, s) over these matches; it is solved
in one vectorised pass by sorting the matches on (p, i - j, s, j) — a run is a stretch of consecutive j on one such
diagonal. A 64-bit hash collision (odds about n^2 / 2^64: nil for 10^8 bars) would add one false bar match.

Scale: everything is numpy over the memory-mapped token store, in chunks of CHUNK_TOKENS. The 15 M train tokens of
the 1,301-piece corpus here (187 k counted bars, ~80 tokens a bar) index in 2-6 s on one (shared) core into ~22 B per
bar (4 MB); a query takes a few milliseconds a piece. At 10 B tokens (~125 M bars) the build would read 20 GB of
tokens once (~25-70 min on one core) and hold ~2.7 GB, so `train_index` caps the tokens it indexes at
MAX_INDEX_TOKENS (1 B: a few minutes, ~270 MB), taking a seeded random subset of train pieces; the rates are then
lower bounds and the summary says `capped`. A bar that matches more than MAX_MATCHES_PER_BAR training bars keeps only
that many (the first in index order), which bounds a query's memory on a corpus full of one formula.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

MIN_NOTES = 2                      # a bar with fewer distinct onsets is skipped (see the module docstring)
CHUNK_TOKENS = 4_000_000           # tokens parsed at once while indexing: bounds the build's working memory
MAX_INDEX_TOKENS = 1_000_000_000   # train tokens indexed at most (see Scale above)
MAX_MATCHES_PER_BAR = 100_000      # training bars one query bar may match
COPY_THRESHOLDS = (2, 4)           # the shares reported: pieces copying >= 2 and >= 4 consecutive bars
_U64 = np.uint64


@dataclass(frozen=True)
class BarVocab:
    """What bar parsing needs of a REMI vocabulary, as lookup tables indexed by token id."""
    is_bar: np.ndarray     # bool
    position: np.ndarray   # int16: the position of a Position token, else -1
    pitch: np.ndarray      # int16: the MIDI pitch of a Pitch token, else -1

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int]) -> "BarVocab":
        size = max(vocab.values()) + 1
        is_bar = np.zeros(size, dtype=bool)
        position = np.full(size, -1, dtype=np.int16)
        pitch = np.full(size, -1, dtype=np.int16)
        for name, token_id in vocab.items():
            kind, _, value = name.partition("_")
            if kind == "Bar":
                is_bar[token_id] = True
            elif kind == "Position" and value.isdigit():
                position[token_id] = int(value)
            elif kind == "Pitch" and value.isdigit():
                pitch[token_id] = int(value)
        return cls(is_bar, position, pitch)


@dataclass(frozen=True)
class Bars:
    """The bars of one or more pieces that have at least MIN_NOTES onsets, in piece then bar order."""
    piece: np.ndarray      # int64: which piece (0-based, in the order given)
    ordinal: np.ndarray    # int64: index among the piece's counted bars (what runs are consecutive in)
    bar: np.ndarray        # int64: bar number in the piece (0 = its first Bar token), for reading a match
    low: np.ndarray        # int16: lowest pitch
    key: np.ndarray        # uint64: hash of the onsets relative to the lowest pitch


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads a uint64 code over all 64 bits (array arithmetic wraps modulo 2^64)."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def parse_bars(ids: np.ndarray, starts: np.ndarray, vocab: BarVocab, max_bars: int | None = None) -> Bars:
    """The counted bars of the pieces concatenated in `ids`, piece k starting at `starts[k]` (`starts[0]` = 0).

    Bars are numbered by the piece's Bar tokens from 0; what comes before its first Bar token (a BOS) is bar -1.
    Ids outside the vocabulary and other token kinds are ignored. `max_bars` keeps bars numbered below it (a crop)."""
    ids = np.asarray(ids, dtype=np.int64)
    ids = np.where((ids >= 0) & (ids < len(vocab.is_bar)), ids, 0)  # 0 = PAD: neither bar, position nor pitch
    n, starts = len(ids), np.asarray(starts, dtype=np.int64)
    lengths = np.diff(np.append(starts, n))
    piece_of_token = np.repeat(np.arange(len(starts)), lengths)
    is_bar = vocab.is_bar[ids]
    new_bar = is_bar.copy()
    new_bar[starts[lengths > 0]] = True  # no bar spans two pieces
    bar_of_token = np.cumsum(new_bar) - 1
    bars_so_far = np.cumsum(is_bar)
    bars_before_piece = (bars_so_far - is_bar)[np.minimum(starts, max(n - 1, 0))] if n else np.zeros(0, np.int64)
    number = bars_so_far - 1 - bars_before_piece[piece_of_token]  # each token's bar number in its piece
    position = vocab.position[ids]
    marks = (position >= 0) | new_bar  # a Position sets the position, a new bar resets it to "none yet" (-1)
    last_mark = np.maximum.accumulate(np.where(marks, np.arange(n), 0))
    current = position[last_mark] + 1  # 0 = before any Position of the bar
    pitch = vocab.pitch[ids]
    notes = np.flatnonzero(pitch >= 0)
    if max_bars is not None:
        notes = notes[number[notes] < max_bars]
    width = int(vocab.position.max()) + 2
    bar, slot, pitch = bar_of_token[notes], current[notes], pitch[notes].astype(np.int64)
    onsets = np.sort((bar * width + slot) * 128 + pitch)  # by bar, then position, then pitch (np.unique: 30x slower)
    onsets = onsets[np.r_[True, onsets[1:] != onsets[:-1]]] if len(onsets) else onsets  # a repeated onset counts once
    bar, slot, pitch = onsets // (width * 128), (onsets // 128) % width, onsets % 128
    first = np.flatnonzero(np.r_[True, bar[1:] != bar[:-1]]) if len(bar) else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.append(first, len(bar)))
    low = np.minimum.reduceat(pitch, first) if len(first) else np.zeros(0, dtype=np.int64)
    codes = _mix((slot * 128 + pitch - np.repeat(low, counts)).astype(_U64))
    key = _mix(np.add.reduceat(codes, first) ^ counts.astype(_U64)) if len(first) else np.zeros(0, dtype=_U64)
    counted = counts >= MIN_NOTES
    bar_id, low, key = bar[first][counted], low[counted], key[counted]
    bar_starts = np.flatnonzero(new_bar)
    piece = piece_of_token[bar_starts[bar_id]]
    ordinal = np.arange(len(piece))
    if len(piece):
        ordinal -= np.maximum.accumulate(np.where(np.r_[True, piece[1:] != piece[:-1]], ordinal, 0))
    return Bars(piece, ordinal, number[bar_starts[bar_id]], low.astype(np.int16), key)


class CopyRun(NamedTuple):
    """The longest copied run of one piece: its length in counted bars, the train piece (metadata row) it comes
    from and the bar numbers where it starts in both (None when nothing matched)."""
    n_bars: int
    train_row: int | None
    train_bar: int | None = None
    piece_bar: int | None = None


@dataclass(frozen=True)
class BarIndex:
    """Every counted bar of the training pieces, sorted by key (see the module docstring)."""
    vocab: BarVocab
    key: np.ndarray       # uint64, sorted
    row: np.ndarray       # int32: metadata row of the train piece
    ordinal: np.ndarray   # int32
    bar: np.ndarray       # int32
    low: np.ndarray       # int16
    n_pieces: int
    n_tokens: int
    capped: bool = False
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"pieces": self.n_pieces, "tokens": self.n_tokens, "bars": int(len(self.key)),
                "capped": self.capped, "seconds": round(self.seconds, 3)}


def build_index(pieces: Sequence[np.ndarray], rows: Sequence[int], vocab: BarVocab, capped: bool = False) -> BarIndex:
    """Index the given token-id arrays (e.g. memory-mapped store slices), piece k known as metadata row rows[k]."""
    started = time.monotonic()
    parts, rows = [], np.asarray(rows, dtype=np.int64)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    begin = 0
    while begin < len(pieces):  # chunks of whole pieces, about CHUNK_TOKENS each
        end = begin + 1 + int(np.searchsorted(np.cumsum(lengths[begin + 1:]), CHUNK_TOKENS - lengths[begin]))
        chunk = np.concatenate([np.asarray(p) for p in pieces[begin:end]]) if end > begin else np.zeros(0)
        starts = np.concatenate([[0], np.cumsum(lengths[begin:end - 1])])
        bars = parse_bars(chunk, starts, vocab)
        parts.append((bars.key, rows[begin:end][bars.piece], bars.ordinal, bars.bar, bars.low))
        begin = end
    key, row, ordinal, bar, low = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, dtype=dt)
                                   for i, dt in enumerate((_U64, np.int64, np.int64, np.int64, np.int16)))
    order = np.lexsort((ordinal, row, key))  # by key, ties in piece and bar order: deterministic truncation
    as32 = [a[order].astype(np.int32) for a in (row, ordinal, bar)]
    return BarIndex(vocab, key[order], *as32, low[order], n_pieces=len(pieces), n_tokens=int(lengths.sum()),
                    capped=capped, seconds=time.monotonic() - started)


def train_index(meta, reader, vocab: BarVocab, seed: int, max_tokens: int = MAX_INDEX_TOKENS) -> BarIndex:
    """The index of the train split's original pieces (transpose 0 rows of metadata.parquet), read from the token
    store; beyond `max_tokens` a seeded random subset of them, in metadata order."""
    train = meta[(meta["transpose"] == 0) & (meta["split"] == "train")]
    store = reader.store("train") if len(train) else None
    rows = train.index.to_numpy(dtype=np.int64)
    store_rows = train["store_row"].to_numpy(dtype=np.int64)
    capped = False
    if store is not None:
        lengths = np.asarray(store.offsets[store_rows + 1] - store.offsets[store_rows])
        if lengths.sum() > max_tokens:
            order = np.random.default_rng(seed).permutation(len(rows))
            keep = np.sort(order[:max(1, int(np.searchsorted(np.cumsum(lengths[order]), max_tokens)))])
            rows, store_rows, capped = rows[keep], store_rows[keep], True
    pieces = [store.piece(r) for r in store_rows] if store is not None else []
    return build_index(pieces, rows, vocab, capped=capped)


def longest_copied_run(index: BarIndex, ids: Sequence[int], max_bars: int | None = None) -> CopyRun:
    """The longest run of consecutive counted bars of `ids` found in one training piece under one transposition
    (ties: the lowest metadata row). `max_bars` looks at the piece's first bars only."""
    q = parse_bars(np.asarray(ids, dtype=np.int64), np.zeros(1, dtype=np.int64), index.vocab, max_bars)
    lo = np.searchsorted(index.key, q.key, side="left")
    count = np.minimum(np.searchsorted(index.key, q.key, side="right") - lo, MAX_MATCHES_PER_BAR)
    total = int(count.sum())
    if total == 0:
        return CopyRun(0, None)
    j = np.repeat(np.arange(len(count)), count)  # query bar of each match
    k = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(total)  # index entry of each match
    row, diagonal = index.row[k], index.ordinal[k].astype(np.int64) - q.ordinal[j]
    shift = q.low[j].astype(np.int64) - index.low[k]
    order = np.lexsort((j, shift, diagonal, row))
    j, k, row, diagonal, shift = j[order], k[order], row[order], diagonal[order], shift[order]
    breaks = np.r_[True, (row[1:] != row[:-1]) | (diagonal[1:] != diagonal[:-1]) | (shift[1:] != shift[:-1])
                   | (j[1:] != j[:-1] + 1)]
    starts = np.flatnonzero(breaks)
    lengths = np.diff(np.append(starts, total))
    best = starts[int(np.argmax(lengths))]  # the first longest: lowest row, then earliest diagonal
    return CopyRun(int(lengths.max()), int(row[best]), int(index.bar[k[best]]), int(q.bar[j[best]]))


def copied_runs(index: BarIndex, pieces: Sequence[Sequence[int]], max_bars: int | None = None) -> list[CopyRun]:
    """`longest_copied_run` of every piece (token-id lists: generated samples, a judged set, real pieces)."""
    return [longest_copied_run(index, ids, max_bars) for ids in pieces]


def copy_rates(runs: Sequence[CopyRun | int]) -> dict:
    """Share of pieces copying at least 2 and 4 consecutive bars, the longest and the mean run (NaN when empty)."""
    n_bars = np.array([r.n_bars if isinstance(r, CopyRun) else int(r) for r in runs], dtype=np.float64)
    out = {f"copy{t}_share": float(np.mean(n_bars >= t)) if len(n_bars) else float("nan") for t in COPY_THRESHOLDS}
    out["max_bars"] = int(n_bars.max()) if len(n_bars) else 0
    out["mean_bars"] = float(n_bars.mean()) if len(n_bars) else float("nan")
    out["n_pieces"] = len(n_bars)
    return out


# ------------------------------------------------------------------------------------------------ the evaluate stage

COPIES_HEADER = ("sample", "path", "composer", "cfg_scale", "copied_bars", "train_piece", "train_row", "train_bar",
                 "sample_bar")


def sample_ids(sample: Mapping, samples_dir, tokenizer) -> list[int] | None:
    """A manifest record's token ids (`token_ids`, written by the sample stage), else its MIDI re-encoded; None when
    neither is there or readable."""
    if isinstance(sample.get("token_ids"), list):
        return [int(t) for t in sample["token_ids"]]
    try:
        import symusic

        from mozart.data.tokenize import encode_score

        return encode_score(tokenizer, symusic.Score(str(samples_dir / str(sample.get("path")))))
    except Exception:  # a missing or broken sample cannot copy anything: it is left out of the rates
        return None


def piece_ids(prepared_dir, rows: Sequence[int]) -> dict[int, str]:
    """piece_id of the given metadata rows, reading only that column (the stage's metadata frame leaves it out)."""
    import pyarrow.parquet as pq

    wanted = sorted({int(r) for r in rows})
    if not wanted:
        return {}
    column = pq.read_table(prepared_dir / "metadata.parquet", columns=["piece_id"]).column(0)
    return dict(zip(wanted, column.take(wanted).to_pylist()))


def memorization_metrics(inputs, samples_dir, real_rows, crop_bars: int, seed: int,
                         index: BarIndex | None = None) -> tuple[dict, str]:
    """eval.json's memorization figures and metrics/eval_copies.tsv, against the train split: the stage's free
    samples (continuations start from a real test piece, so they are left out) and the given real test rows (the
    H1/H4/GS comparison's pieces, cropped to `crop_bars` like them), as the baseline of what unrelated music
    shares by chance."""
    index = index or train_index(inputs.meta, inputs.reader, BarVocab.from_vocab(inputs.tokenizer.vocab), seed)
    free = [s for s in inputs.samples if s.get("kind") == "free"]
    with_ids = [(s, ids) for s in free if (ids := sample_ids(s, samples_dir, inputs.tokenizer)) is not None]
    measured = list(zip([s for s, _ in with_ids], copied_runs(index, [ids for _, ids in with_ids])))
    real = copied_runs(index, [inputs.reader.ids(sp, r) for sp, r in zip(real_rows["split"], real_rows["store_row"])],
                       max_bars=crop_bars)
    names = piece_ids(inputs.reader.prepared_dir, [c.train_row for _, c in measured if c.train_row is not None])
    lines = ["\t".join(COPIES_HEADER)]
    for s, c in measured:
        where = ("", "", "", "") if c.train_row is None else (names[c.train_row], c.train_row, c.train_bar + 1,
                                                                c.piece_bar + 1)
        cells = (s.get("id"), s.get("path"), s.get("composer"), s.get("cfg_scale"), c.n_bars, *where)
        lines.append("\t".join(str(v).replace("\t", " ") for v in cells))
    generated, real_test = copy_rates([c for _, c in measured]), copy_rates(real)
    flat = {f"{side}_{key}": rates[key] for side, rates in (("generated", generated), ("real", real_test))
            for key in (f"copy{t}_share" for t in COPY_THRESHOLDS)}
    flat.update(generated_max_copy_bars=generated["max_bars"], real_max_copy_bars=real_test["max_bars"])
    result = {"memorization": {"generated": generated, "real_test": real_test, "index": index.summary(),
                               "min_notes_per_bar": MIN_NOTES}, **flat}
    return result, "\n".join(lines) + "\n"
