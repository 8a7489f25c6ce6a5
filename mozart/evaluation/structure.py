"""Structureness indicator SI (MusDr, Wu & Yang 2020): how strongly a piece repeats itself at short, mid and long
timescales, read off the fitness scape plot of the chroma self-similarity of its audio.

The procedure is MusDr's own (slSeanWU/MusDr: `run_python_scapeplot.py`, `mueller_audio_tools/ssm_features.py`,
`mueller_audio_tools/scapeplot.py` and `compute_structure_indicator` in `musdr/eval_metrics.py`, which follow
Müller's FMP notebooks C3/C4), step by step:

1. audio: the MIDI rendered by FluidSynth (mozart.report.audio.render_wav) at 22,050 Hz, the rate MusDr loads audio
   at, read back mono with `librosa.load`;
2. chroma: `librosa.feature.chroma_stft(tuning=0, norm=2, n_fft=4410, hop_length=2205)` = 10 Hz, smoothed by a
   21-frame boxcar and downsampled by 5 = 2 Hz features, each column scaled to unit length (a column of norm
   <= 0.001 becomes the uniform unit vector);
3. SSM: dot products, made transposition-invariant (maximum over the 12 cyclic chroma shifts) and path-enhanced
   (a 16-frame diagonal mean, forward and backward, at 7 relative tempi from 0.5 to 2, maximum over all);
   thresholded keeping the top 25 % of cells, those scaled to [0, 1], the rest set to the penalty -2; then
   S(n, n) = 1;
4. fitness scape plot: for every segment (start, length) the optimal path family over the whole piece (FMP's
   dynamic programme and its backtracking, quirks included), fitness = harmonic mean of the normalised score
   (score - length) / (cells of the family) and the normalised coverage (coverage - length) / N; SP[length-1, start];
5. SI(low, high) = max of the scape-plot rows int(low * 2) - 1 .. int(high * 2) - 1 (segment lengths of low to high
   seconds), 0 when the piece is shorter than `low`; short = SI(3, 8), mid = SI(8, 15), long = SI(15, 128) (MusDr's
   `--timescale_bounds 3 8 15` and its default upper bound 128 s).

The scape plot is O(N^4) at N = 2 frames per second (a 16-bar piece at 120 bpm: N = 67); MusDr's pure-Python loop
takes minutes per piece, so the same loops run compiled by numba (librosa's own dependency).

Deviations from MusDr, none of which changes a value MusDr would compute:
- only the scape-plot rows the three indicators read are computed (the other rows stay 0, as SI never reads them);
- the rows keep MusDr's zeros for the starts a length does not fit, so an SI is never below 0, as in MusDr;
- where FMP's backtracking finds no finite predecessor it would reuse a stale cell (or fail); that cannot happen on a
  path of finite score for N >= 3, and here it takes the diagonal predecessor;
- a piece whose audio is silent (no notes) gets NaN rather than MusDr's value for a constant SSM, and is left out
  of the means.
"""
from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from numba import njit

ANALYSIS_SR = 22050            # MusDr's librosa.load rate; rendering at it directly skips a resampling
CHROMA_HOP, CHROMA_FFT = 2205, 4410  # 10 Hz chroma
SMOOTH_LEN, DOWNSAMPLE = 21, 5       # boxcar smoothing, then 10 Hz / 5 = 2 Hz
FEATURE_RATE = ANALYSIS_SR / CHROMA_HOP / DOWNSAMPLE  # 2.0 frames per second
NORM_THRESHOLD = 0.001
PATH_SMOOTH_LEN = 16
TEMPO_RELATIVE = np.exp(np.linspace(np.log(0.5), np.log(2.0), 7))
KEEP_FRACTION, PENALTY = 0.25, -2.0
TIMESCALES = {"si_short": (3, 8), "si_mid": (8, 15), "si_long": (15, 128)}  # seconds
SI_KEYS = tuple(TIMESCALES)
PIECE_TIMEOUT_S = 300.0


# ------------------------------------------------------------------------------------------ features and SSM

def chroma_features(audio: np.ndarray, sr: int = ANALYSIS_SR) -> np.ndarray:
    """12 x N chroma at FEATURE_RATE, smoothed and column-normalised as MusDr does."""
    import librosa
    from scipy import signal

    chroma = librosa.feature.chroma_stft(y=audio, sr=sr, tuning=0, norm=2, hop_length=CHROMA_HOP,
                                         n_fft=CHROMA_FFT)
    kernel = signal.get_window("boxcar", SMOOTH_LEN)[None, :]
    smooth = (signal.convolve(chroma, kernel, mode="same") / SMOOTH_LEN)[:, ::DOWNSAMPLE]
    norms = np.sqrt((smooth ** 2).sum(axis=0))
    unit = np.full((smooth.shape[0], 1), 1.0 / math.sqrt(smooth.shape[0]))
    return np.where(norms > NORM_THRESHOLD, smooth / np.maximum(norms, NORM_THRESHOLD), unit)


def _resample_index(n_out: int, n_in: int) -> np.ndarray:
    """FMP's nearest-neighbour index map from n_in columns to n_out (np.around: halves to even)."""
    return np.maximum(np.around(np.arange(1, n_out + 1) / n_out * n_in) - 1, 0).astype(np.int64)


def _path_smooth(S: np.ndarray, length: int, direction: int) -> np.ndarray:
    """FMP's filter_diag_mult_SM: mean over `length` cells along diagonals, at each relative tempo; maximum."""
    n = S.shape[0]
    out = np.zeros((n, n))
    for tempo in TEMPO_RELATIVE:
        m = int(np.ceil(n / tempo))
        resampled = S[:, _resample_index(m, n)]
        extended = np.zeros((n + length, m + length))
        acc = np.zeros((n, m))
        if direction == 0:
            extended[:n, :m] = resampled
            for pos in range(length):
                acc += extended[pos:n + pos, pos:m + pos]
        else:
            extended[length:, length:] = resampled
            for pos in range(length):
                acc += extended[length - pos:n + length - pos, length - pos:m + length - pos]
        out = np.maximum(out, (acc / length)[:, _resample_index(n, m)])
    return out


def threshold_relative(S: np.ndarray, keep: float = KEEP_FRACTION, penalty: float = PENALTY) -> np.ndarray:
    """FMP's threshold_matrix(strategy='relative', scale=True): keep the top `keep` share of cells, scale the kept
    ones to [0, 1] (their minimum -> 0), set every cell that was 0 after the cut to `penalty`."""
    out = S.astype(np.float64, copy=True)
    below = int(np.round(out.size * (1 - keep)))
    if below < out.size:
        out[out < np.sort(out, axis=None)[below]] = 0
    else:
        out[:] = 0
    zero, positive = out == 0, out > 0
    low = out[positive].min() if positive.any() else 0.0
    high = out.max()
    if high > low:  # FMP leaves the matrix unscaled otherwise
        out = (out - low) / (high - low)
        out[zero] = penalty
    return out


def self_similarity(features: np.ndarray) -> np.ndarray:
    """The enhanced, thresholded, diagonal-normalised SSM of a 12 x N feature sequence (MusDr's parameters)."""
    best = None
    for shift in range(features.shape[0]):
        cross = np.roll(features, shift, axis=0).T @ features
        smoothed = np.maximum(_path_smooth(cross, PATH_SMOOTH_LEN, 0), _path_smooth(cross, PATH_SMOOTH_LEN, 1))
        best = smoothed if best is None else np.maximum(best, smoothed)
    S = threshold_relative(best)
    np.fill_diagonal(S, 1.0)
    return S


# ------------------------------------------------------------------------------------------ fitness scape plot

@njit(cache=True)
def _accumulated_score(S, start, length):
    """FMP's compute_accumulated_score_matrix on the columns start..start+length-1 of S (all rows)."""
    n_rows, width = S.shape[0], length + 1
    D = np.full((n_rows, width), -np.inf)
    D[0, 0] = 0.0
    D[0, 1] = S[0, start]
    for n in range(1, n_rows):
        D[n, 0] = max(D[n - 1, 0], D[n - 1, width - 1])
        D[n, 1] = D[n, 0] + S[n, start]
        for m in range(2, width):  # D[n - 2] at n = 1 is the last row (Python's negative index), as in FMP
            D[n, m] = S[n, start + m - 1] + max(D[n - 1, m - 1], D[n - 1, m - 2], D[n - 2, m - 1])
    return D


@njit(cache=True)
def _family_fitness(D, score, n_frames, length):
    """FMP's compute_optimal_path_family + compute_fitness, keeping only what fitness needs: the cells of the path
    family and its coverage (each path's first to last row, inclusive)."""
    width = D.shape[1]
    n, m = D.shape[0] - 1, 0
    cells, coverage, in_path, top, bottom = 0, 0, 0, 0, 0
    if D[n, width - 1] >= D[n, 0]:
        m = width - 1
        in_path, top, bottom = 1, n, n
    while n > 0 or m > 0:
        if n == 0:
            cn, cm = 0, m - 1
        elif m == 0:  # the elevator column: jump to the end of a path, or go down
            if D[n - 1, width - 1] > D[n - 1, 0]:
                cn, cm = n - 1, width - 1
                if in_path:
                    cells += in_path
                    coverage += top - bottom + 1
                in_path, top, bottom = 1, n - 1, n - 1
            else:
                cn, cm = n - 1, 0
        elif m == 1:
            cn, cm = n, 0
        else:  # FMP's predecessor lists: the first strictly best of them, in this order
            cn, cm = n - 1, m - 1
            best = D[n - 1, m - 1]
            if n > 2 and D[n - 2, m - 1] > best:
                cn, cm, best = n - 2, m - 1, D[n - 2, m - 1]
            if m > 2 and D[n - 1, m - 2] > best:
                cn, cm = n - 1, m - 2
            in_path += 1
            bottom = cn
        n, m = cn, cm
    if in_path:
        cells += in_path
        coverage += top - bottom + 1
    eps = 1e-16
    # every path ends at the segment's last column, so FMP's M = path_family[0][-1][1] + 1 is the segment length
    score_n = (score - length) / (cells + eps)
    coverage_n = (coverage - length) / (n_frames + eps)
    return 2 * score_n * coverage_n / (score_n + coverage_n + eps)


@njit(cache=True)
def _scape_rows(S, first_length, last_length):
    n_frames = S.shape[0]
    plot = np.zeros((n_frames, n_frames))
    for length in range(first_length, last_length + 1):
        for start in range(n_frames - length + 1):
            D = _accumulated_score(S, start, length)
            score = max(D[n_frames - 1, 0], D[n_frames - 1, length])
            plot[length - 1, start] = _family_fitness(D, score, n_frames, length)
    return plot


def fitness_scape_plot(S: np.ndarray, first_length: int = 1, last_length: int | None = None) -> np.ndarray:
    """MusDr's compute_fitness_scape_plot(S)[0] as SP[length - 1, start], for segment lengths first..last (frames);
    the rows of other lengths and the starts a length does not fit are 0."""
    S = np.ascontiguousarray(S, dtype=np.float64)
    n_frames = S.shape[0]
    last = n_frames if last_length is None else min(last_length, n_frames)
    return _scape_rows(S, max(1, first_length), last)


def structure_indicator(plot: np.ndarray, low_s: float, high_s: float, rate: float = FEATURE_RATE) -> float:
    """MusDr's compute_structure_indicator: the maximum fitness over segment lengths low_s..high_s seconds."""
    low, high = int(low_s * rate) - 1, int(high_s * rate)
    return 0.0 if low >= plot.shape[0] else float(np.max(plot[low:high]))


def indicators_from_ssm(S: np.ndarray, rate: float = FEATURE_RATE) -> dict[str, float]:
    """si_short, si_mid, si_long of one SSM (only the scape-plot rows they read are computed)."""
    first = min(int(lo * rate) for lo, _ in TIMESCALES.values())
    last = max(int(hi * rate) for _, hi in TIMESCALES.values())
    plot = fitness_scape_plot(S, first, last)
    return {key: structure_indicator(plot, lo, hi, rate) for key, (lo, hi) in TIMESCALES.items()}


# ------------------------------------------------------------------------------------------ audio and batches

def structureness(path: str | Path, soundfont: str | Path | None = None) -> dict[str, float]:
    """{"si_short", "si_mid", "si_long"} of a MIDI file (rendered with `soundfont` at 22,050 Hz) or a WAV file;
    NaN for silent audio."""
    import librosa

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="mozart-si-") as tmp:
        wav = path
        if path.suffix.lower() not in (".wav", ".flac", ".ogg", ".mp3"):
            from mozart.report.audio import DEFAULT_SOUNDFONT, render_wav

            wav = Path(tmp) / "piece.wav"
            render_wav(path, wav, soundfont or DEFAULT_SOUNDFONT, ANALYSIS_SR)
        audio, sr = librosa.load(str(wav), sr=ANALYSIS_SR, mono=True)
    if audio.size == 0 or not np.any(audio):
        return {key: math.nan for key in SI_KEYS}
    return indicators_from_ssm(self_similarity(chroma_features(audio, sr)))


def structureness_of_midis(midi_paths: Sequence[str | Path], soundfont: str | Path | None = None, n_jobs: int = -1,
                           progress: bool = True, desc: str = "structure") -> list[dict[str, float]]:
    """structureness of every file, in parallel forked workers with a progress bar, in input order; a file that
    fails, crashes or hangs gets NaN values and its reason under "error"."""
    from mozart.infra.isolate import map_isolated

    if not midi_paths:
        return []
    # librosa's and our numba functions compiled (or loaded from numba's cache) once, before the workers fork
    indicators_from_ssm(self_similarity(chroma_features(np.zeros(ANALYSIS_SR, dtype=np.float32))))
    work = functools.partial(structureness, soundfont=soundfont)
    # spawned, not forked: a child forked from a process that already drives FluidSynth (a test run, `mozart serve`)
    # can deadlock in its soundfont loader; numba's on-disk cache (warmed above) keeps a fresh worker's start short
    outcomes = map_isolated(work, [str(p) for p in midi_paths], n_jobs=n_jobs, timeout_s=PIECE_TIMEOUT_S,
                            desc=desc, progress=progress, start_method="spawn")
    return [o.value if o.ok else {**{k: math.nan for k in SI_KEYS}, "error": o.reason} for o in outcomes]


def mean_indicators(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean si_* over the pieces that have them, and n (how many)."""
    valid = [r for r in rows if all(not math.isnan(r[k]) for k in SI_KEYS)]
    means = {k: float(np.mean([r[k] for r in valid])) if valid else math.nan for k in SI_KEYS}
    return {**means, "n": len(valid)}


def crop_to_bars(score: Any, bars: int, use_time_signatures: bool = False) -> Any:
    """The score's notes with an onset in its first `bars` bars (4/4 bars unless use_time_signatures), as the
    evaluate stage crops real pieces for H1/H4/GS."""
    from mozart.evaluation.metrics import bar_layout

    last = max((int(n.time) for t in score.tracks for n in t.notes), default=0)
    starts, _ = bar_layout(int(score.ticks_per_quarter), last,
                           score.time_signatures if use_time_signatures else None)
    return score if bars >= len(starts) else score.clip(0, int(starts[bars]))


def structure_metrics(generated_midis: Sequence[Path], real_scores: Sequence[Any], crop_bars: int, soundfont: str,
                      use_time_signatures: bool = False, n_jobs: int = -1) -> dict[str, Any]:
    """eval.json's structure figures: {"structure": {"generated": {...}, "real": {...}}} plus the flat keys si_* and
    real_si_*. Real pieces (symusic Scores, None where undecodable) are cropped to `crop_bars` and rendered from
    temporary MIDI files."""
    from mozart.report.audio import check_soundfont

    soundfont = str(check_soundfont(soundfont))  # a missing soundfont fails the stage, not every piece
    with tempfile.TemporaryDirectory(prefix="mozart-si-real-") as tmp:
        real_midis = []
        for i, score in enumerate(s for s in real_scores if s is not None):
            path = Path(tmp) / f"real-{i}.mid"
            crop_to_bars(score, crop_bars, use_time_signatures).dump_midi(str(path))
            real_midis.append(path)
        generated = mean_indicators(structureness_of_midis(generated_midis, soundfont, n_jobs, desc="SI generated"))
        real = mean_indicators(structureness_of_midis(real_midis, soundfont, n_jobs, desc="SI real"))
    return {"structure": {"generated": generated, "real": real},
            **{k: generated[k] for k in SI_KEYS}, **{f"real_{k}": real[k] for k in SI_KEYS}}
