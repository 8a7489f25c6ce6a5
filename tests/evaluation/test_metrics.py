"""mozart.evaluation.metrics on hand-built pieces with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics_helpers import BAR, TPQ, make_score
from mozart.evaluation.metrics import json_safe, mean_metrics, onset_grid, piece_metrics, score_notes


def test_one_pitch_class_has_zero_entropy():
    # C in three octaves, every beat of 6 bars: one pitch class
    notes = [(b * BAR + k * TPQ, TPQ, 48 + 12 * (k % 3)) for b in range(6) for k in range(4)]
    m = piece_metrics(make_score(notes))
    assert m["h1"] == pytest.approx(0.0) and m["h4"] == pytest.approx(0.0)


def test_all_twelve_pitch_classes_equally_give_log2_12():
    notes = [(b * BAR + k * (BAR // 12), 100, 60 + k) for b in range(5) for k in range(12)]
    m = piece_metrics(make_score(notes))
    assert m["h1"] == pytest.approx(math.log2(12)) and m["h4"] == pytest.approx(math.log2(12))


def test_histogram_counts_onsets_not_duration():
    # C lasts a whole bar, G a 16th: onset counts are equal, so H1 = 1 bit
    m = piece_metrics(make_score([(0, BAR, 60), (0, TPQ // 4, 67)]))
    assert m["h1"] == pytest.approx(1.0)


def test_windows_without_notes_are_skipped():
    # bar 0: C only (H=0); bars 1-4 empty; bar 5: C and G (H=1) -> mean over the 2 non-empty 1-bar windows = 0.5
    notes = [(0, TPQ, 60), (5 * BAR, TPQ, 60), (5 * BAR + TPQ, TPQ, 67)]
    m = piece_metrics(make_score(notes))
    assert m["n_bars"] == 6
    assert m["h1"] == pytest.approx(0.5)
    # 4-bar windows starting at bars 0..2: [0-3] has only C (0), [1-4] is empty (skipped), [2-5] has C, G (1)
    assert m["h4"] == pytest.approx(0.5)


def test_tracks_are_merged_and_duplicates_count():
    # the same C in two tracks plus one G: histogram (2/3, 1/3)
    score = make_score([(0, TPQ, 60), (0, TPQ, 60), (TPQ, TPQ, 67)], n_tracks=3)
    m = piece_metrics(score)
    expected = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert m["n_notes"] == 3 and m["h1"] == pytest.approx(expected)


def test_identical_bars_have_gs_one():
    pattern = [0, TPQ, TPQ + TPQ // 2, 3 * TPQ]
    notes = [(b * BAR + t, 60, 60 + b) for b in range(7) for t in pattern]
    assert piece_metrics(make_score(notes))["gs"] == pytest.approx(1.0)


def test_full_bar_against_empty_bar_has_gs_zero():
    grid = 16
    # bar 0 empty, bar 1 has an onset on every one of the 16 grid steps
    notes = [(BAR + k * BAR // grid, 10, 60) for k in range(grid)]
    m = piece_metrics(make_score(notes), grid=grid)
    assert m["n_bars"] == 2 and m["gs"] == pytest.approx(0.0)
    assert m["empty_bar_fraction"] == pytest.approx(0.5)


def test_gs_counts_all_pairs_including_empty_bars():
    # 3 bars: A, empty, A with A = 1 onset on a 4-step grid. Pairs: (A,0): 1 diff, (A,A): 0, (0,A): 1
    notes = [(0, 10, 60), (2 * BAR, 10, 60)]
    m = piece_metrics(make_score(notes), grid=4)
    assert m["gs"] == pytest.approx(1 - (1 + 0 + 1) / (3 * 4))


def test_onsets_round_to_nearest_step_with_halves_up():
    grid = 4  # one step = one quarter = 480 ticks
    score = make_score([(239, 10, 60), (240, 10, 60), (241, 10, 60), (720, 10, 60)])
    bar, pos = onset_grid(score_notes(score), grid)
    assert pos.tolist() == [0, 1, 1, 2]  # 239 -> 0, exactly half (240) -> 1, 720 = 1.5 steps -> 2
    assert bar.tolist() == [0, 0, 0, 0]


def test_onset_rounding_to_the_next_bar_belongs_to_its_step_zero():
    grid = 4
    score = make_score([(0, 10, 60), (BAR - TPQ // 2, 10, 67)])  # 3.5 steps -> step 4 = next bar's step 0
    bar, pos = onset_grid(score_notes(score), grid)
    assert bar.tolist() == [0, 1] and pos.tolist() == [0, 0]
    m = piece_metrics(score, grid=grid)
    assert m["n_bars"] == 2 and m["gs"] == pytest.approx(1.0)  # both bars: one onset at step 0


def test_n_bars_runs_to_the_last_onset_not_the_last_note_end():
    m = piece_metrics(make_score([(0, 10 * BAR, 60), (BAR + TPQ, TPQ, 62)]))
    assert m["n_bars"] == 2


def test_time_signature_option_lays_bars_from_the_file():
    # six quarter-note beats in 3/4: two identical 3/4 bars, but 1.5 different 4/4 bars
    notes = [(k * TPQ, TPQ, 60 if k % 3 == 0 else 64) for k in range(6)]
    score = make_score(notes, time_signatures=[(0, 3, 4)])
    with_ts = piece_metrics(score, grid=12, use_time_signatures=True)
    without = piece_metrics(score, grid=12)
    assert with_ts["n_bars"] == 2 and with_ts["gs"] == pytest.approx(1.0)
    assert without["n_bars"] == 2 and without["gs"] < 1.0  # bar 1 holds 2 beats, bar 0 holds 4


def test_time_signature_change_starts_new_bars():
    # 4/4 bar, then 3/4 from tick BAR: an onset at BAR + 3 quarters is bar 2's first step
    score = make_score([(0, 10, 60), (BAR + 3 * TPQ, 10, 60)], time_signatures=[(0, 4, 4), (BAR, 3, 4)])
    notes = score_notes(score)
    bar, pos = onset_grid(notes, 12, use_time_signatures=True, time_signatures=score.time_signatures)
    assert bar.tolist() == [0, 2] and pos.tolist() == [0, 0]
    bar44, pos44 = onset_grid(notes, 12)
    assert bar44.tolist() == [0, 1] and pos44.tolist() == [0, 9]


def test_descriptors():
    # two overlapping notes: 1 sounding for 480 ticks, 2 for 480 ticks -> mean polyphony 1.5
    notes = [(0, 960, 40), (480, 480, 70), (2 * BAR, 100, 55)]
    m = piece_metrics(make_score(notes))
    assert m["n_bars"] == 3 and m["n_notes"] == 3
    assert m["note_density"] == pytest.approx(1.0)
    assert m["pitch_range"] == 30
    assert m["empty_bar_fraction"] == pytest.approx(1 / 3)
    assert m["mean_polyphony"] == pytest.approx((1.5 * 960 + 1 * 100) / (960 + 100))


def test_short_and_empty_pieces_give_nan_not_errors():
    short = piece_metrics(make_score([(0, 10, 60), (BAR, 10, 62)]))
    assert short["n_bars"] == 2 and math.isnan(short["h4"]) and not math.isnan(short["h1"])
    one_bar = piece_metrics(make_score([(0, 10, 60)]))
    assert math.isnan(one_bar["gs"])  # no pair of bars
    empty = piece_metrics(make_score([]))
    assert empty["n_bars"] == 0 and empty["n_notes"] == 0 and math.isnan(empty["h1"])


def test_max_bars_crops_to_the_first_bars():
    notes = [(b * BAR, TPQ, 60 + b) for b in range(10)]
    m = piece_metrics(make_score(notes), max_bars=4)
    assert m["n_bars"] == 4 and m["n_notes"] == 4


def test_mean_skips_errors_and_nan_and_json_has_no_nan():
    rows = [{"path": "a", "h1": 1.0, "gs": float("nan")}, {"path": "b", "h1": 3.0, "gs": 0.5},
            {"path": "c", "error": "broken"}]
    mean = mean_metrics(rows, keys=("h1", "gs", "h4"))
    assert mean["h1"] == pytest.approx(2.0) and mean["gs"] == pytest.approx(0.5) and math.isnan(mean["h4"])
    safe = json_safe({"x": [np.float64("nan"), np.int64(3)], "y": float("inf")})
    assert safe == {"x": [None, 3], "y": None}
