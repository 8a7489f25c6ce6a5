"""How pieces end: the last bar's pile-up and the share of pieces that end by EOS (evaluate stage, eval.json).

- `last_bar_onset_ratio`: note onsets in a piece's last bar (the bar of its last onset, mozart.evaluation.metrics'
  bar layout) over the median onsets per bar of the bars before it (at least 1, so a sparse piece does not divide by
  zero). A piece cut mid-phrase by the bar count often piles notes into its last bar (ratio 3-6); a closing chord
  gives about 0.3-1; real music ends near 0.5-1.
- `eos_fraction`: samples whose manifest `stop_reason` is "eos" (the decoder sampled EOS, rather than being cut at
  the bar count or the token limit); `eos_within_length_fraction`: those that also have the requested length
  (`target_bars`) within one bar.

Samples written before the manifest recorded `stop_reason` give NaN for the two fractions.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mozart.evaluation.metrics import onset_grid, score_notes


def last_bar_onset_ratio(score: Any, grid: int = 64, use_time_signatures: bool = False) -> float:
    """Onsets in the last bar / median onsets per earlier bar (NaN for an empty or one-bar piece)."""
    notes = score_notes(score)
    bar, _ = onset_grid(notes, grid, use_time_signatures, score.time_signatures if use_time_signatures else None)
    if len(bar) == 0:
        return math.nan
    counts = np.bincount(bar, minlength=int(bar.max()) + 1)
    if len(counts) < 2:
        return math.nan
    return float(counts[-1] / max(float(np.median(counts[:-1])), 1.0))


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def ending_metrics(samples: Sequence[dict], gen_scores: Sequence[Any], real_scores: Sequence[Any], grid: int = 64,
                   use_time_signatures: bool = False) -> dict[str, float]:
    """eval.json's ending figures for the generated samples (manifest rows + their scores, None where unreadable)
    and, for reference, the real test pieces (whole, not cropped)."""
    ratios = [last_bar_onset_ratio(s, grid, use_time_signatures) for s in gen_scores if s is not None]
    real = [last_bar_onset_ratio(s, grid, use_time_signatures) for s in real_scores if s is not None]
    recorded = [s for s in samples if "stop_reason" in s]
    by_eos = [s for s in recorded if s["stop_reason"] == "eos"]
    in_length = [s for s in by_eos if abs(int(s["n_bars"]) - int(s.get("target_bars", s["n_bars"]))) <= 1]
    return {
        "last_bar_onset_ratio": _mean(ratios),
        "real_last_bar_onset_ratio": _mean(real),
        "eos_fraction": len(by_eos) / len(recorded) if recorded else math.nan,
        "eos_within_length_fraction": len(in_length) / len(recorded) if recorded else math.nan,
    }
