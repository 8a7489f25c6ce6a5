"""H1/H4/GS against a slow, obviously-correct reference (plain loops, exact fractions) on seeded random pieces."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from metrics_helpers import TPQ, make_score, random_notes
from mozart.evaluation.metrics import piece_metrics


def reference_bars(notes, bar_len: int, grid: int) -> list[tuple[int, int, int]]:
    """(bar, step, pitch) per note: offset in steps as an exact fraction, rounded half up, spilling into the next
    bar when it reaches `grid`."""
    out = []
    for onset, _duration, pitch in notes:
        bar = onset // bar_len
        step = math.floor(Fraction((onset - bar * bar_len) * grid, bar_len) + Fraction(1, 2))
        if step == grid:
            bar, step = bar + 1, 0
        out.append((bar, step, pitch))
    return out


def reference_entropy(placed, n_bars: int, window: int) -> float:
    entropies = []
    for start in range(0, n_bars - window + 1):
        counts = [0] * 12
        for bar, _step, pitch in placed:
            if start <= bar < start + window:
                counts[pitch % 12] += 1
        total = sum(counts)
        if total == 0:
            continue
        entropies.append(-sum(c / total * math.log2(c / total) for c in counts if c))
    return sum(entropies) / len(entropies) if entropies else math.nan


def reference_gs(placed, n_bars: int, grid: int) -> float:
    vectors = [[0] * grid for _ in range(n_bars)]
    for bar, step, _pitch in placed:
        vectors[bar][step] = 1
    sims = []
    for i in range(n_bars):
        for j in range(i + 1, n_bars):
            differing = sum(1 for a, b in zip(vectors[i], vectors[j]) if a != b)
            sims.append(1 - differing / grid)
    return sum(sims) / len(sims) if sims else math.nan


def reference(notes, grid: int, bar_len: int) -> dict:
    placed = reference_bars(notes, bar_len, grid)
    n_bars = max(b for b, _, _ in placed) + 1
    return {"n_bars": n_bars, "h1": reference_entropy(placed, n_bars, 1), "h4": reference_entropy(placed, n_bars, 4),
            "gs": reference_gs(placed, n_bars, grid)}


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("grid", [64, 16, 12])
def test_matches_reference_on_random_pieces(seed, grid):
    rng = np.random.default_rng(seed)
    notes = random_notes(rng, n_bars=int(rng.integers(1, 14)), density=float(rng.uniform(1, 12)))
    if not notes:
        notes = [(0, TPQ, 60)]
    fast = piece_metrics(make_score(notes, n_tracks=2), grid=grid)
    slow = reference(notes, grid, 4 * TPQ)
    for key in ("n_bars", "h1", "h4", "gs"):
        assert _close(fast[key], slow[key]), (key, fast[key], slow[key])


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_on_grid_aligned_pieces_with_half_steps(seed):
    # onsets on a 32-step grid judged on a 16-step grid: many exact halves, which must all round up
    rng = np.random.default_rng(100 + seed)
    bar = 4 * TPQ
    notes = [(b * bar + int(k) * bar // 32, 60, int(rng.integers(21, 109)))
             for b in range(8) for k in rng.integers(0, 32, size=6)]
    fast = piece_metrics(make_score(notes), grid=16)
    slow = reference(notes, 16, bar)
    for key in ("n_bars", "h1", "h4", "gs"):
        assert _close(fast[key], slow[key]), (key, fast[key], slow[key])


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_with_a_three_four_time_signature(seed):
    rng = np.random.default_rng(200 + seed)
    notes = random_notes(rng, n_bars=9, density=6.0, empty_bar_p=0.3)
    notes = notes or [(0, TPQ, 60)]
    fast = piece_metrics(make_score(notes, time_signatures=[(0, 3, 4)]), grid=24, use_time_signatures=True)
    slow = reference(notes, 24, 3 * TPQ)
    for key in ("n_bars", "h1", "h4", "gs"):
        assert _close(fast[key], slow[key]), (key, fast[key], slow[key])
