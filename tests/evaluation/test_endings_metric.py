"""The evaluate stage's ending figures: the last bar's onsets against the median bar, and pieces ended by EOS."""
from __future__ import annotations

import math

import pytest
import symusic

from mozart.evaluation.endings import ending_metrics, last_bar_onset_ratio

TPQ = 480


def _score(onsets_per_bar: list[int]) -> symusic.Score:
    score = symusic.Score(TPQ)
    track = symusic.Track("Piano", 0, False)
    for bar, n in enumerate(onsets_per_bar):
        for i in range(n):  # n onsets spread over the bar's 16 sixteenths (wrapping into chords beyond 16)
            track.notes.append(symusic.Note(bar * 4 * TPQ + (i % 16) * TPQ // 4, TPQ // 4, 60 + i % 24, 80))
    score.tracks.append(track)
    return score


def test_a_pile_up_in_the_last_bar_reads_as_its_multiple_of_the_median_bar():
    assert last_bar_onset_ratio(_score([8, 6, 8, 10, 24])) == pytest.approx(3.0)   # median of 8, 6, 8, 10 is 8
    assert last_bar_onset_ratio(_score([8, 8, 8, 3])) == pytest.approx(3 / 8)


def test_empty_bars_do_not_divide_by_zero_and_a_one_bar_piece_has_no_ratio():
    assert last_bar_onset_ratio(_score([0, 0, 0, 2])) == pytest.approx(2.0)
    assert math.isnan(last_bar_onset_ratio(_score([5])))
    assert math.isnan(last_bar_onset_ratio(_score([])))


def test_eos_fractions_count_the_stop_reason_and_the_requested_length():
    samples = [{"stop_reason": "eos", "n_bars": 8, "target_bars": 8},
               {"stop_reason": "eos", "n_bars": 5, "target_bars": 8},     # ended by EOS but 3 bars short
               {"stop_reason": "bars", "n_bars": 8, "target_bars": 8},
               {"stop_reason": "eos", "n_bars": 15, "target_bars": 16}]
    scores = [_score([8, 8, 8, 24]), None, _score([8, 8, 8, 8]), _score([8, 8, 8, 4])]
    out = ending_metrics(samples, scores, [_score([4, 4, 2])])
    assert out["eos_fraction"] == 0.75
    assert out["eos_within_length_fraction"] == 0.5
    assert out["last_bar_onset_ratio"] == pytest.approx((3.0 + 1.0 + 0.5) / 3)  # the unreadable sample is left out
    assert out["real_last_bar_onset_ratio"] == pytest.approx(0.5)


def test_samples_without_a_recorded_stop_reason_give_nan_fractions():
    out = ending_metrics([{"n_bars": 4}], [_score([8, 8])], [])
    assert math.isnan(out["eos_fraction"]) and math.isnan(out["real_last_bar_onset_ratio"])
