"""Structureness indicator SI (MusDr): the scape-plot core against values worked out by hand from MusDr's formulas
(fitness = harmonic mean of (score - M) / cells and (coverage - M) / N), its thresholding and timescale windows, and
the audio path end to end on a piece with an obvious repeat."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics_helpers import BAR, TPQ, make_score
from mozart.evaluation.structure import (fitness_scape_plot, indicators_from_ssm, structure_indicator,
                                         structureness, structureness_of_midis, threshold_relative)
from render_helpers import SOUNDFONT

P = -2.0  # MusDr's penalty for cells below the threshold


def _periodic_ssm(period: int, copies: int) -> np.ndarray:
    """The SSM of a phrase of `period` frames played `copies` times: 1 where two frames are the same point of the
    phrase, the penalty elsewhere."""
    frames = np.arange(period * copies)
    return np.where((frames[:, None] - frames[None, :]) % period == 0, 1.0, P)


def test_the_fitness_of_tiny_segments_is_what_the_path_family_gives_on_paper():
    # frames A B A B. Segment (start 0, length 2) = columns A B: the DP finds two paths (rows 0-1 and 2-3) of score
    # 1 + 1 each, so score 4, cells 4, coverage 4, M = 2: score_n = (4-2)/4, coverage_n = (4-2)/4, fitness 1/2.
    # Segment (0, 1) = column A: paths at rows 0 and 2, score 2, cells 2, coverage 2, M = 1: score_n = 1/2,
    # coverage_n = 1/4, fitness 2 (1/2)(1/4) / (3/4) = 1/3. Segment (1, 2) = B A: only itself (score 2 = M):
    # fitness 0; the whole piece (0, 4): only itself, fitness 0.
    plot = fitness_scape_plot(_periodic_ssm(2, 2))
    assert plot[1, 0] == pytest.approx(0.5, abs=1e-12)
    assert plot[1, 2] == pytest.approx(0.5, abs=1e-12)
    assert plot[0, 0] == pytest.approx(1 / 3, abs=1e-12)
    assert plot[1, 1] == pytest.approx(0.0, abs=1e-12)
    assert plot[3, 0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(plot[3, 1:] == 0) and np.all(plot[2, 2:] == 0)  # starts a length does not fit stay 0


@pytest.mark.parametrize("copies", [2, 3, 4])
def test_a_phrase_played_c_times_has_fitness_c_minus_one_over_c(copies):
    # c paths of M cells of similarity 1: score_n = (cM - M) / cM and coverage_n = (cM - M) / (cM), both (c-1)/c
    period = 6
    plot = fitness_scape_plot(_periodic_ssm(period, copies))
    assert plot[period - 1, 0] == pytest.approx((copies - 1) / copies, abs=1e-12)
    assert plot.max() == pytest.approx((copies - 1) / copies, abs=1e-12)  # the phrase is the fittest segment
    if copies == 2:
        assert plot[period:].max() <= 1e-12  # a longer segment has only itself


def test_an_eight_second_repeat_shows_at_the_short_and_mid_timescales_only():
    # A A with A = 16 frames (8 s at MusDr's 2 Hz): the 8 s segment has fitness 1/2; a segment of 15 s or more
    # matches only itself (fitness 0); SI(3, 8) reads lengths 6..16 frames and SI(8, 15) lengths 16..30
    si = indicators_from_ssm(_periodic_ssm(16, 2))
    assert si["si_short"] == pytest.approx(0.5, abs=1e-12)
    assert si["si_mid"] == pytest.approx(0.5, abs=1e-12)
    assert si["si_long"] == pytest.approx(0.0, abs=1e-12)


def test_structure_indicator_takes_the_maximum_over_its_timescale_rows():
    plot = np.tile(np.arange(40, dtype=float)[:, None], (1, 40))  # row r holds r everywhere
    assert structure_indicator(plot, 3, 8) == 15.0    # rows int(3*2)-1 = 5 .. int(8*2)-1 = 15
    assert structure_indicator(plot, 8, 15) == 29.0   # rows 15 .. 29
    assert structure_indicator(plot, 15, 128) == 39.0
    assert structure_indicator(plot[:20, :20], 15, 128) == 0.0  # a piece shorter than 15 s: 0, as in MusDr


def test_relative_threshold_keeps_the_top_quarter_scaled_and_penalises_the_rest():
    S = np.arange(1, 17, dtype=float).reshape(4, 4)
    out = threshold_relative(S)
    # 16 cells, round(16 * 0.75) = 12 below: keep 13..16, scaled to (v - 13) / 3; the rest get the penalty
    expected = np.where(S >= 13, (S - 13) / 3, P)
    np.testing.assert_allclose(out, expected)


def _phrase(offset: int, bars: int, seed: int) -> list[tuple[int, int, int]]:
    """`bars` 4/4 bars: a bass note per bar under four quarter-note melody notes, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    notes = []
    for b in range(bars):
        notes.append((offset + b * BAR, BAR, int(rng.choice([48, 50, 52, 53, 55, 57]))))
        notes += [(offset + b * BAR + i * TPQ, TPQ, int(rng.integers(60, 84))) for i in range(4)]
    return notes


def _fluidsynth_missing() -> str:
    """Why the audio path cannot run here ('' when it can)."""
    try:
        import fluidsynth  # noqa: F401 - pyfluidsynth loads libfluidsynth on import
    except ImportError as exc:
        return f"FluidSynth is not installed ({exc}): apt-get install libfluidsynth3"
    return "" if SOUNDFONT.is_file() else f"{SOUNDFONT} is not installed (apt-get install fluid-soundfont-gm)"


needs_fluidsynth = pytest.mark.skipif(bool(_fluidsynth_missing()), reason=_fluidsynth_missing() or "-")


@needs_fluidsynth
def test_a_repeated_phrase_scores_clearly_higher_than_random_notes_from_audio(tmp_path):
    # 16 bars at 120 bpm = 32 s: a 4-bar (8 s) phrase played four times, against 16 bars drawn at random
    repeated = [n for k in range(4) for n in _phrase(k * 4 * BAR, 4, seed=3)]
    make_score(repeated).dump_midi(str(tmp_path / "repeat.mid"))
    make_score(_phrase(0, 16, seed=5)).dump_midi(str(tmp_path / "random.mid"))
    aa = structureness(tmp_path / "repeat.mid", SOUNDFONT)
    rnd = structureness(tmp_path / "random.mid", SOUNDFONT)
    assert all(0.0 <= v <= 1.0 for v in (*aa.values(), *rnd.values()))
    assert aa["si_mid"] > rnd["si_mid"] + 0.3    # the 8 s repeat: measured 0.73 against 0.0
    assert aa["si_short"] > rnd["si_short"] + 0.2
    assert aa["si_long"] > rnd["si_long"]        # A A as a 16 s block repeated once


@needs_fluidsynth
def test_the_batch_keeps_order_and_marks_unreadable_files(tmp_path):
    make_score(_phrase(0, 4, seed=1)).dump_midi(str(tmp_path / "a.mid"))
    (tmp_path / "broken.mid").write_bytes(b"not a midi file")
    single = structureness(tmp_path / "a.mid", SOUNDFONT)
    rows = structureness_of_midis([tmp_path / "a.mid", tmp_path / "broken.mid"], SOUNDFONT, n_jobs=1,
                                  progress=False)
    assert {k: rows[0][k] for k in single} == pytest.approx(single)
    assert all(math.isnan(rows[1][k]) for k in single) and rows[1]["error"]


@needs_fluidsynth
def test_the_batch_works_in_a_process_that_already_drives_fluidsynth(tmp_path, monkeypatch):
    """A worker forked from a process with a live FluidSynth hung in its soundfont loader (seen in CI: the test
    process had rendered audio before); the batch's workers are spawned fresh instead."""
    from mozart.evaluation import structure
    from mozart.report.audio import render_wav

    monkeypatch.setattr(structure, "PIECE_TIMEOUT_S", 60.0)  # a hang fails in a minute, not five
    paths = []
    for seed in range(3):
        make_score(_phrase(0, 4, seed=seed)).dump_midi(str(tmp_path / f"p{seed}.mid"))
        paths.append(tmp_path / f"p{seed}.mid")
    render_wav(paths[0], tmp_path / "parent.wav", SOUNDFONT, 22050)  # this process now drives FluidSynth
    rows = structureness_of_midis(paths, SOUNDFONT, n_jobs=2, progress=False)
    assert [r.get("error", "") for r in rows] == ["", "", ""]
    assert all(0.0 <= r["si_short"] <= 1.0 for r in rows)
