"""Style adherence: a small composer classifier on hand-made musical features.

Features of a stretch of music (all from MIDI notes, tracks merged; histograms normalised to probabilities):
pitch-class histogram (raw, and rotated so its strongest class comes first: a key-independent profile), melodic
interval histogram of the top voice (-12..+12, clipped), vertical interval histogram within chords (0..24),
onset-position histogram on 16 steps per bar, note-duration histogram (log2 quarters), and scalars: log note density,
pitch range, mean and spread of pitch, mean polyphony, fraction of onsets that are chords.

The classifier (standardisation + multinomial logistic regression) is trained on bar segments of real pieces, the
same length as the generated ones, so it judges like with like. Style accuracy of generated music is the rate at
which it names the composer the sample was conditioned on.
"""
from __future__ import annotations

import math

import numpy as np

from mozart.evaluation.metrics import mean_polyphony, onset_grid, score_notes

POSITIONS_PER_BAR = 16
DURATION_BINS = np.arange(-4, 4)  # log2 of duration in quarters: 1/16 .. 8 quarters (clipped)


def _histogram(values: np.ndarray, n_bins: int) -> np.ndarray:
    counts = np.bincount(values, minlength=n_bins)[:n_bins].astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def _features(onset, duration, pitch, pos, tpq: int, n_bars: int) -> np.ndarray:
    order = np.lexsort((pitch, onset))
    onset, duration, pitch, pos = onset[order], duration[order], pitch[order], pos[order]
    pc = _histogram(pitch % 12, 12)
    pc_rotated = np.roll(pc, -int(np.argmax(pc)))
    # top voice: the highest pitch at each distinct onset time
    last_of_onset = np.r_[onset[1:] != onset[:-1], True]
    top = pitch[last_of_onset]
    melodic = _histogram(np.clip(np.diff(top), -12, 12) + 12, 25)
    same_onset = onset[1:] == onset[:-1]
    vertical = _histogram(np.clip(np.diff(pitch)[same_onset], 0, 24), 25)
    positions = _histogram(pos, POSITIONS_PER_BAR)  # pos is already on the 16-step grid
    log_dur = np.log2(np.maximum(duration, 1) / tpq)
    durations = _histogram(np.clip(np.round(log_dur).astype(np.int64) - DURATION_BINS[0], 0, len(DURATION_BINS) - 1),
                           len(DURATION_BINS))
    n_onsets = int(last_of_onset.sum())
    poly = mean_polyphony(onset, duration)
    scalars = np.array([
        math.log1p(len(pitch) / max(1, n_bars)),
        (pitch.max() - pitch.min()) / 88.0,
        pitch.mean() / 128.0,
        pitch.std() / 12.0,
        math.log1p(0.0 if math.isnan(poly) else poly),
        1.0 - n_onsets / len(pitch),
    ])
    return np.concatenate([pc, pc_rotated, melodic, vertical, positions, durations, scalars])


N_FEATURES = 12 + 12 + 25 + 25 + POSITIONS_PER_BAR + len(DURATION_BINS) + 6


def segment_features(score, segment_bars: int | None = None, max_segments: int = 1) -> list[np.ndarray]:
    """Feature vectors of up to `max_segments` non-overlapping segments of `segment_bars` 4/4 bars (evenly spread
    over the piece; segments without notes skipped). `segment_bars=None` gives the whole piece as one segment."""
    notes = score_notes(score)
    if len(notes.onset) == 0:
        return []
    bar, pos = onset_grid(notes, POSITIONS_PER_BAR)
    n_bars = int(bar.max()) + 1
    if segment_bars is None or segment_bars >= n_bars:
        starts = [0]
        segment_bars = n_bars
    else:
        all_starts = np.arange(0, n_bars - segment_bars + 1, segment_bars)
        pick = np.unique(np.linspace(0, len(all_starts) - 1, min(max_segments, len(all_starts))).round().astype(int))
        starts = all_starts[pick]
    out = []
    for start in starts:
        keep = (bar >= start) & (bar < start + segment_bars)
        if keep.sum() < 2:
            continue
        out.append(_features(notes.onset[keep], notes.duration[keep], notes.pitch[keep], pos[keep], notes.tpq,
                             segment_bars))
    return out


def fit_classifier(features: np.ndarray, labels: list[str] | np.ndarray, seed: int = 0, c: float = 0.1):
    """Standardise + multinomial logistic regression; balanced class weights so a big composer does not dominate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("a composer classifier needs at least two composers in its training data")
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed))
    model.fit(np.asarray(features), labels)
    return model


def chance_levels(train_labels, test_labels) -> dict:
    """Baselines for held-out accuracy: uniform guessing (1/n_classes) and always naming the biggest train class."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    classes, counts = np.unique(train_labels, return_counts=True)
    majority = classes[np.argmax(counts)]
    return {"chance": 1.0 / len(classes),
            "majority_rate": float(np.mean(test_labels == majority)) if len(test_labels) else math.nan}


def accuracy(model, features: np.ndarray, labels) -> float:
    """Fraction of rows whose predicted composer equals the label (NaN with no rows)."""
    if len(labels) == 0:
        return math.nan
    return float(np.mean(model.predict(np.asarray(features)) == np.asarray(labels)))


def adherence(predicted: list[str | None], wanted: list[str]) -> float:
    """Rate at which the classifier named the composer a sample was conditioned on; None (unreadable) is a miss."""
    if not wanted:
        return math.nan
    return float(np.mean([p is not None and p == w for p, w in zip(predicted, wanted)]))
