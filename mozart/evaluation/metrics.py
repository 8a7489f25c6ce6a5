"""Objective music metrics from MIDI notes (a symusic Score), with MusDr's conventions (Wu & Yang, Jazz Transformer).

- H1, H4: pitch-class histogram entropy (bits) of note onsets over windows of 1 and 4 bars, sliding one bar at a
  time; each onset counts once (not weighted by duration); windows with no onset are skipped; a piece's value is the
  mean over windows. A piece shorter than the window has no window: the value is NaN, as in MusDr.
- GS: grooving-pattern similarity. Each bar is a binary vector of onsets on `grid` positions; the similarity of two
  bars is 1 - (differing positions) / grid; GS is the mean over ALL pairs of bars, empty bars included (MusDr samples
  1,000 random pairs; we compute the exact mean, which is deterministic).

Bars: by default 4/4 bars of 4 quarter notes from tick 0 (MusDr ignores time signatures); `use_time_signatures=True`
lays bars out from the file's time signatures instead (4/4 before the first one; a change starts a new bar). All
tracks are merged and duplicate notes count. An onset is rounded to the nearest grid step, halves up; an onset that
rounds to position `grid` belongs to step 0 of the next bar. `n_bars` runs from bar 0 to the bar of the LAST ONSET
(trailing sustain or silence adds no bars).

Extra descriptors: n_notes, note density (onsets per bar), pitch range (semitones), mean polyphony (notes sounding
at once, averaged over the time at least one note sounds) and the empty-bar fraction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mozart.errors import ConfigError, DataError

METRIC_KEYS = ("n_bars", "n_notes", "h1", "h4", "gs", "note_density", "pitch_range", "mean_polyphony",
               "empty_bar_fraction")
N_PITCH_CLASSES = 12
MAX_BARS = 100_000  # a file longer than this (hours at any tempo) is reported, not laid out in memory


@dataclass(frozen=True)
class Notes:
    """All notes of a score, tracks merged, as parallel arrays (ticks), plus the score's ticks per quarter."""
    onset: np.ndarray     # int64 ticks
    duration: np.ndarray  # int64 ticks
    pitch: np.ndarray     # int64 MIDI pitch
    tpq: int


def score_notes(score) -> Notes:
    """Merge the notes of every track of a symusic Score (tick time)."""
    parts = [t.notes.numpy() for t in score.tracks if len(t.notes)]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Notes(empty, empty, empty, int(score.ticks_per_quarter))
    return Notes(onset=np.concatenate([p["time"] for p in parts]).astype(np.int64),
                 duration=np.concatenate([p["duration"] for p in parts]).astype(np.int64),
                 pitch=np.concatenate([p["pitch"] for p in parts]).astype(np.int64) & 0x7F,  # int8 -> 0..127
                 tpq=int(score.ticks_per_quarter))


def bar_layout(tpq: int, last_tick: int, time_signatures=None) -> tuple[np.ndarray, np.ndarray]:
    """(bar start ticks, bar lengths in ticks) covering [0, last_tick] plus one spare bar.

    Without time signatures every bar is 4 quarters. With them, each signature starts a new bar at its time and lays
    bars of numerator * 4/denominator quarters until the next signature (the bar before a change may be short).
    """
    four_four = 4.0 * tpq
    segments = [(0, four_four)]
    for ts in sorted(time_signatures or [], key=lambda ts: ts.time):
        length = ts.numerator * 4.0 / ts.denominator * tpq
        if length <= 0:
            continue
        if ts.time <= segments[-1][0]:  # a signature at the same tick as the previous one replaces it
            segments[-1] = (segments[-1][0], length)
        else:
            segments.append((int(ts.time), length))
    starts, lengths = [], []
    for i, (seg_start, length) in enumerate(segments):
        seg_end = segments[i + 1][0] if i + 1 < len(segments) else last_tick + 2 * length
        s = seg_start + length * np.arange(max(1, math.ceil((seg_end - seg_start) / length)))
        starts.append(s)
        lengths.append(np.full(len(s), length))
    return np.concatenate(starts), np.concatenate(lengths)


def onset_grid(notes: Notes, grid: int, use_time_signatures: bool = False,
               time_signatures=None) -> tuple[np.ndarray, np.ndarray]:
    """(bar index, grid position 0..grid-1) of every onset, rounded to the nearest step with halves up."""
    if len(notes.onset) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    last = int(notes.onset.max())
    if use_time_signatures:
        starts, lengths = bar_layout(notes.tpq, last, time_signatures)
    else:
        starts, lengths = bar_layout(notes.tpq, last)
    bar = np.searchsorted(starts, notes.onset, side="right") - 1
    # (offset * grid) / length is exact for integer ticks, so a half step really is .5 and rounds up
    pos = np.floor((notes.onset - starts[bar]) * grid / lengths[bar] + 0.5 + 1e-9).astype(np.int64)
    next_start = starts[np.minimum(bar + 1, len(starts) - 1)]
    rounded_tick = starts[bar] + pos * lengths[bar] / grid
    spill = (pos >= grid) | ((bar + 1 < len(starts)) & (rounded_tick >= next_start - 1e-9))
    bar = np.where(spill, bar + 1, bar)
    pos = np.where(spill, 0, pos)
    return bar.astype(np.int64), pos


def pitch_class_entropy(bar: np.ndarray, pitch: np.ndarray, n_bars: int, window: int) -> float:
    """Mean over sliding windows of `window` bars of the onset pitch-class histogram entropy (log base 2)."""
    if n_bars < window:
        return math.nan
    counts = np.zeros((n_bars, N_PITCH_CLASSES), dtype=np.int64)
    np.add.at(counts, (bar, pitch % N_PITCH_CLASSES), 1)
    cum = np.vstack([np.zeros((1, N_PITCH_CLASSES), dtype=np.int64), np.cumsum(counts, axis=0)])
    windows = cum[window:] - cum[:-window]  # (n_bars - window + 1, 12)
    totals = windows.sum(axis=1)
    windows, totals = windows[totals > 0], totals[totals > 0]
    if len(windows) == 0:
        return math.nan
    p = windows / totals[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return float(terms.sum(axis=1).mean())


def grooving_similarity(bar: np.ndarray, pos: np.ndarray, n_bars: int, grid: int) -> float:
    """Exact mean over all pairs of bars of 1 - XOR(onset vectors)/grid, in O(n_bars * grid).

    For binary rows a_i, sum_{i<j} |a_i XOR a_j| = sum_{i<j} (|a_i| + |a_j| - 2 a_i.a_j)
    = (N - 1) * S - (|sum_i a_i|^2 - S), with S = sum_i |a_i|, since sum_{i,j} a_i.a_j = |sum_i a_i|^2.
    """
    if n_bars < 2:
        return math.nan
    onsets = np.zeros((n_bars, grid), dtype=bool)
    onsets[bar, pos] = True
    column_sums = onsets.sum(axis=0).astype(np.float64)
    total = float(column_sums.sum())
    differing = (n_bars - 1) * total - (float(column_sums @ column_sums) - total)
    n_pairs = n_bars * (n_bars - 1) / 2
    return 1.0 - differing / (grid * n_pairs)


def mean_polyphony(onset: np.ndarray, duration: np.ndarray) -> float:
    """Average number of sounding notes, weighted by time, over the time at least one note sounds."""
    keep = duration > 0
    if not keep.any():
        return math.nan
    times = np.concatenate([onset[keep], onset[keep] + duration[keep]])
    deltas = np.concatenate([np.ones(keep.sum()), -np.ones(keep.sum())])
    order = np.lexsort((deltas, times))  # at equal times, ends (-1) before starts: no phantom overlap
    times, deltas = times[order], deltas[order]
    sounding = np.cumsum(deltas)[:-1]
    spans = np.diff(times).astype(np.float64)
    busy = sounding > 0
    busy_time = spans[busy].sum()
    return float((sounding[busy] * spans[busy]).sum() / busy_time) if busy_time > 0 else math.nan


def piece_metrics(score, grid: int = 64, use_time_signatures: bool = False, max_bars: int | None = None) -> dict:
    """All metrics of one score. `max_bars` crops to the first bars (notes with an onset in a later bar dropped).

    Values that do not exist (an empty piece, fewer bars than a window) are NaN.
    """
    if grid < 1:
        raise ValueError(f"grid must be a positive number of positions per bar, got {grid}")
    notes = score_notes(score)
    bar, pos = onset_grid(notes, grid, use_time_signatures, score.time_signatures if use_time_signatures else None)
    onset, duration, pitch = notes.onset, notes.duration, notes.pitch
    if max_bars is not None:
        keep = bar < max_bars
        bar, pos, onset, duration, pitch = bar[keep], pos[keep], onset[keep], duration[keep], pitch[keep]
    n_notes = len(bar)
    n_bars = int(bar.max()) + 1 if n_notes else 0
    if n_notes == 0:
        return {"n_bars": 0, "n_notes": 0, **{k: math.nan for k in METRIC_KEYS[2:]}}
    occupied = np.unique(bar)
    return {
        "n_bars": n_bars,
        "n_notes": n_notes,
        "h1": pitch_class_entropy(bar, pitch, n_bars, 1),
        "h4": pitch_class_entropy(bar, pitch, n_bars, 4),
        "gs": grooving_similarity(bar, pos, n_bars, grid),
        "note_density": n_notes / n_bars,
        "pitch_range": int(pitch.max() - pitch.min()),
        "mean_polyphony": mean_polyphony(onset, duration),
        "empty_bar_fraction": 1.0 - len(occupied) / n_bars,
    }


def file_metrics(path: str | Path, grid: int = 64, use_time_signatures: bool = False) -> dict:
    """Metrics of one MIDI file as `{"path", **metrics}`, or `{"path", "error"}` if it cannot be read or is
    degenerate (0 ticks per quarter note: no timing). One bad file is one error row; the batch goes on."""
    import symusic

    try:
        score = symusic.Score(str(path))
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError for broken files
        return {"path": str(path), "error": f"{type(exc).__name__}: {exc}".strip()}
    if score.ticks_per_quarter <= 0:
        return {"path": str(path), "error": f"{score.ticks_per_quarter} ticks per quarter note in the header (no "
                                            "timing, so no bars)"}
    if score.end() / (4 * score.ticks_per_quarter) > MAX_BARS:
        return {"path": str(path), "error": f"longer than {MAX_BARS:,} bars of 4/4: too long to measure"}
    try:
        return {"path": str(path), **piece_metrics(score, grid, use_time_signatures)}
    except (ArithmeticError, ValueError, IndexError, MemoryError) as exc:  # a file no bar layout fits
        return {"path": str(path), "error": f"cannot be measured ({type(exc).__name__}: {exc})"}


def mean_metrics(rows: list[dict], keys: tuple[str, ...] = METRIC_KEYS) -> dict:
    """Mean of each metric over rows without an error, ignoring NaN values; NaN when no row has the metric."""
    out = {}
    for key in keys:
        values = [r[key] for r in rows if "error" not in r and r.get(key) is not None
                  and not (isinstance(r[key], float) and math.isnan(r[key]))]
        out[key] = float(np.mean(values)) if values else math.nan
    return out


def json_safe(value):
    """NaN/inf -> None, numpy scalars -> Python numbers, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------------------------- files given by a user

MIDI_SUFFIXES = (".mid", ".midi")


def find_midi_files(paths: list[str]) -> list[Path]:
    """Files given directly, plus .mid/.midi files found recursively in folders; sorted within each folder."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MIDI_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{raw} does not exist: pass MIDI files or folders that hold them")
    if not files:
        raise DataError(f"no MIDI files (.mid/.midi) found in {', '.join(paths)}")
    return files


def evaluate_files(files: list[Path], grid: int = 64, use_time_signatures: bool = False, jobs: int = 1) -> dict:
    """`{"files": [per-file metrics or {"path", "error"}], "mean": {...}}` with NaN kept as NaN."""
    from tqdm import tqdm

    if grid < 1:
        raise ConfigError(f"--grid must be a positive number of positions per bar, got {grid}")
    if jobs == 1 or len(files) < 32:
        rows = [file_metrics(f, grid, use_time_signatures)
                for f in tqdm(files, desc="evaluate", unit="file", disable=None, leave=False)]
    else:
        from joblib import Parallel, delayed

        rows = Parallel(n_jobs=jobs, batch_size=8)(delayed(file_metrics)(f, grid, use_time_signatures)
                                                   for f in tqdm(files, desc="evaluate", unit="file", disable=None,
                                                                 leave=False))
    return {"files": rows, "mean": mean_metrics(rows)}
