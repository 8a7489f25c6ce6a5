"""Render MIDI for listening and looking: a WAV through FluidSynth and a piano-roll PNG.

`render_wav` drives the synthesizer itself (no audio driver, no FluidSynth MIDI player): every note of the score is
played on a General MIDI acoustic piano (program 0), events in time order, and the audio between two events is pulled
with `get_samples` in fixed blocks and streamed into the WAV, so memory stays bounded for pieces of any length.

A MIDI file with no notes renders a short silent WAV (the release tail only, peak and rms 0) rather than failing: the
listening page should still show a generated sample that came out empty, and its player makes the emptiness obvious.

`render_reports` is the render stage's library side: every sample of `data/samples/manifest.json` rendered in
parallel into a temporary folder, the page written by `mozart.report.page.build_report`, and that folder swapped in as
`reports/` whole (`atomic_dir`), so a failure at any point leaves the previous report untouched.
"""
from __future__ import annotations

import ctypes
import math
import os
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from mozart.infra.atomic import atomic_path
from mozart.errors import MozartError

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
RELEASE_TAIL_S = 1.5     # audio kept after the last note-off, so releases and reverb ring out instead of clipping
BLOCK_FRAMES = 4096      # frames pulled from the synth per call: bounded memory, few Python round trips
SYNTH_GAIN = 1.0         # FluidSynth's default 0.2 is very quiet for solo piano; 1.0 still leaves headroom for dense chords
SUSTAIN_PEDAL = 64       # the only controller forwarded: piano MIDI relies on it, the others only add risk

NOTE_COLOR = "#1f6fb2"   # piano-roll note fill; the screenshot test looks for this colour
NOTE_EDGE = "#0b3a61"
BAR_LINE_COLOR = "#9a9a9a"
BLACK_KEY_ROW = "#eef1f4"

_FLUID_WARN, _FLUID_INFO, _FLUID_DBG = 2, 3, 4


def _load_fluidsynth():
    """Import pyfluidsynth (it loads libfluidsynth on import) and silence its warning/info/debug log on stderr."""
    try:
        import fluidsynth
    except ImportError as exc:
        raise MozartError(f"cannot load FluidSynth ({exc}): install it with `apt-get install libfluidsynth3` "
                          "and `pip install pyfluidsynth`") from None
    set_log = getattr(fluidsynth._fl, "fluid_set_log_function", None)
    if set_log is not None:  # a NULL handler disables that level; errors and panics stay visible
        set_log.restype = ctypes.c_void_p
        set_log.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for level in (_FLUID_WARN, _FLUID_INFO, _FLUID_DBG):
            set_log(level, None, None)
    return fluidsynth


def check_soundfont(soundfont: str | Path) -> Path:
    """The soundfont path, or a MozartError naming it and the two ways to fix it."""
    path = Path(soundfont).expanduser()
    if not path.is_file():
        raise MozartError(f"soundfont {path} not found: install the General MIDI soundfont with "
                          "`apt-get install fluid-soundfont-gm`, or set render.soundfont in params.yaml to an .sf2 file")
    return path


def _load_score(midi_path: Path, ttype: str):
    from symusic import Score

    if not midi_path.is_file():
        raise MozartError(f"MIDI file {midi_path} not found: run the sample stage first (or check the path)")
    try:
        return Score(midi_path, ttype=ttype)
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError for corrupt files
        raise MozartError(f"cannot read MIDI file {midi_path}: {exc}") from None


def _midi_events(score) -> list[tuple[float, int, int, int]]:
    """(seconds, order, a, b) sorted in time order; order 0 = note off, 1 = pedal, 2 = note on.

    Offs sort before ons at the same instant so a repeated note is re-struck rather than cut short.
    """
    events: list[tuple[float, int, int, int]] = []
    for track in score.tracks:
        if track.is_drum:
            continue  # a piano rendering has no use for percussion
        notes = track.notes.numpy()
        for t, d, p, v in zip(notes["time"], notes["duration"], notes["pitch"], notes["velocity"]):
            p, v = int(p), max(1, min(127, int(v)))
            events.append((float(t), 2, p, v))
            events.append((float(t) + max(float(d), 0.0), 0, p, 0))
        controls = track.controls.numpy()
        for t, number, value in zip(controls["time"], controls["number"], controls["value"]):
            if int(number) == SUSTAIN_PEDAL:
                events.append((float(t), 1, SUSTAIN_PEDAL, int(value)))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


class _WavStream:
    """Pull audio from the synth in blocks into an open WAV file, keeping peak and sum of squares as it goes."""

    def __init__(self, synth, wav: wave.Wave_write):
        self.synth, self.wav = synth, wav
        self.frames = 0
        self.peak = 0
        self.sum_squares = 0.0

    def advance_to(self, frame: int) -> None:
        while self.frames < frame:
            n = min(BLOCK_FRAMES, frame - self.frames)
            block = np.asarray(self.synth.get_samples(n), dtype=np.int16)
            if block.size:
                self.peak = max(self.peak, int(np.abs(block.astype(np.int32)).max()))
                self.sum_squares += float(np.square(block.astype(np.float64)).sum())
            self.wav.writeframes(block.astype("<i2").tobytes())
            self.frames += n


def render_wav(midi_path: str | Path, wav_path: str | Path, soundfont: str | Path = DEFAULT_SOUNDFONT,
               sample_rate: int = 44100) -> dict[str, float]:
    """Render `midi_path` to a 16-bit stereo WAV at `wav_path` (written atomically) on a GM acoustic piano.

    Returns {"seconds": duration of the WAV, "peak": max |sample| in [0, 1], "rms": root mean square in [0, 1]}.
    A MIDI with no notes gives a silent WAV of RELEASE_TAIL_S seconds (peak = rms = 0).
    """
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    sf_path = check_soundfont(soundfont)
    if sample_rate < 8000 or sample_rate > 192000:
        raise MozartError(f"render.sample_rate = {sample_rate} is out of range: use e.g. 44100 or 48000")
    events = _midi_events(_load_score(midi_path, "second"))
    fluidsynth = _load_fluidsynth()

    synth = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(sf_path))
        if sfid < 0:
            raise MozartError(f"soundfont {sf_path} could not be loaded (not a valid .sf2 file?): reinstall it with "
                              "`apt-get install --reinstall fluid-soundfont-gm` or point render.soundfont elsewhere")
        synth.program_select(0, sfid, 0, 0)  # channel 0, bank 0, program 0: Acoustic Grand Piano
        sounding = [0] * 128  # overlapping notes of one pitch: only the last one to end sends the note-off
        with atomic_path(wav_path) as tmp:
            with wave.open(str(tmp), "wb") as wav:
                wav.setnchannels(2)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)
                stream = _WavStream(synth, wav)
                for seconds, kind, a, b in events:
                    stream.advance_to(int(round(seconds * sample_rate)))
                    if kind == 2:
                        sounding[a] += 1
                        synth.noteon(0, a, b)
                    elif kind == 0:
                        sounding[a] -= 1
                        if sounding[a] == 0:
                            synth.noteoff(0, a)
                    else:
                        synth.cc(0, a, b)
                stream.advance_to(stream.frames + int(round(RELEASE_TAIL_S * sample_rate)))
    finally:
        synth.delete()

    n_values = 2 * stream.frames
    return {
        "seconds": stream.frames / sample_rate,
        "peak": stream.peak / 32768.0,
        "rms": math.sqrt(stream.sum_squares / n_values) / 32768.0 if n_values else 0.0,
    }


def _bar_ticks(score, end_tick: int) -> list[int]:
    """Tick of every bar line from 0 to past `end_tick`, following the time signatures (4/4 when there are none)."""
    tpq = score.ticks_per_quarter
    sigs = sorted(((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures))
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    bars: list[int] = []
    for i, (start, num, den) in enumerate(sigs):
        last = i + 1 == len(sigs)
        stop = end_tick if last else sigs[i + 1][0]
        bar_len = max(1, int(round(tpq * 4 * num / den)))
        tick = start
        while tick < stop:
            bars.append(tick)
            tick += bar_len
        if last:
            bars.append(tick)  # closing line at or after the end of the last note
    return sorted(set(bars))


def _note_name(pitch: int) -> str:
    return ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][pitch % 12] + str(pitch // 12 - 1)


def render_piano_roll(midi_path: str | Path, png_path: str | Path, title: str) -> None:
    """Draw pitch against time (in quarter notes, labelled by bar number) with bar lines; write a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    midi_path, png_path = Path(midi_path), Path(png_path)
    score = _load_score(midi_path, "tick")
    tpq = score.ticks_per_quarter
    starts, ends, pitches = [], [], []
    for track in score.tracks:
        if track.is_drum:
            continue
        notes = track.notes.numpy()
        starts.append(notes["time"])
        ends.append(notes["time"] + notes["duration"])
        pitches.append(notes["pitch"])
    starts = np.concatenate(starts) / tpq if starts else np.zeros(0)
    ends = np.concatenate(ends) / tpq if ends else np.zeros(0)
    pitches = np.concatenate(pitches).astype(int) if pitches else np.zeros(0, dtype=int)

    end_tick = int(max(ends.max() * tpq if ends.size else 0, tpq * 4))
    bars = np.asarray(_bar_ticks(score, end_tick)) / tpq
    low, high = (int(pitches.min()) - 2, int(pitches.max()) + 2) if pitches.size else (57, 75)

    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    try:
        for p in range(low, high + 1):  # shade black-key rows so pitches can be read off like a keyboard
            if p % 12 in (1, 3, 6, 8, 10):
                ax.axhspan(p - 0.5, p + 0.5, color=BLACK_KEY_ROW, zorder=0, lw=0)
        for x in bars:
            ax.axvline(x, color=BAR_LINE_COLOR, lw=0.8, zorder=1)
        if pitches.size:
            widths = np.maximum(ends - starts, 0.05)
            verts = [[(s, p - 0.4), (s + w, p - 0.4), (s + w, p + 0.4), (s, p + 0.4)]
                     for s, w, p in zip(starts, widths, pitches)]
            ax.add_collection(PolyCollection(verts, facecolors=NOTE_COLOR, edgecolors=NOTE_EDGE, linewidths=0.3,
                                             zorder=2))
        else:
            ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="#555555")
        ax.set_xlim(0, bars[-1])
        ax.set_ylim(low - 0.5, high + 0.5)
        step = max(1, int(math.ceil(len(bars) / 24)))  # at most ~24 bar labels, whatever the length
        ax.set_xticks(bars[::step])
        ax.set_xticklabels([str(i * step + 1) for i in range(len(bars[::step]))])
        c_rows = [p for p in range(low, high + 1) if p % 12 == 0]
        ax.set_yticks(c_rows)
        ax.set_yticklabels([_note_name(p) for p in c_rows])
        ax.set_xlabel("bar")
        ax.set_ylabel("pitch")
        ax.set_title(title, fontsize=11, parse_math=False)  # titles hold user data: a "$" must not start mathtext
        fig.tight_layout()
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------- the render stage

def render_one(midi_path: str, wav_path: str, png_path: str, soundfont: str, sample_rate: int,
               title: str) -> dict[str, float]:
    """Render one sample's WAV and piano roll (a joblib task: plain arguments, module-level)."""
    stats = render_wav(midi_path, wav_path, soundfont, sample_rate)
    render_piano_roll(midi_path, png_path, title)
    return stats


def _run_all(calls: list[tuple], workers: int, progress: bool) -> list[dict[str, float]]:
    """render_one over `calls`, in `workers` processes (joblib) when more than one, with a progress bar."""
    from tqdm import tqdm

    results: list[dict[str, float]] = []
    with tqdm(total=len(calls), desc="render", unit="sample", disable=not progress) as bar:
        if workers == 1:
            for call in calls:
                results.append(render_one(*call))
                bar.update()
        else:
            from joblib import Parallel, delayed

            for stats in Parallel(n_jobs=workers, return_as="generator")(delayed(render_one)(*c) for c in calls):
                results.append(stats)
                bar.update()
    return results


def render_reports(samples_dir: str | Path, metrics_dir: str | Path, reports_dir: str | Path, cfg,
                   n_jobs: int = -1, progress: bool = True) -> dict[str, Any]:
    """The render stage: every sample's WAV and piano roll plus index.html, swapped in as `reports_dir` atomically.

    `cfg` is a RenderConfig (soundfont, sample_rate). Inputs are checked before anything is written; any failure
    leaves the previous `reports_dir` as it was. Returns a summary: n_samples, audio_seconds, silent (ids),
    wall_seconds, index (path of the final index.html).
    """
    from mozart.report import page as report
    from mozart.report.figures import render_figures
    from mozart.infra.atomic import atomic_dir, read_json

    started = time.monotonic()
    samples_dir, metrics_dir, reports_dir = Path(samples_dir), Path(metrics_dir), Path(reports_dir)
    soundfont = check_soundfont(cfg.soundfont)
    samples = report.load_manifest(samples_dir)
    sample_metrics = read_json(metrics_dir / "sample.json", "run the sample stage first (`dvc repro sample`)")
    eval_metrics = read_json(metrics_dir / "eval.json", "run the evaluate stage first (`dvc repro evaluate`)")
    composers = report.read_tsv(metrics_dir / "eval_composers.tsv")
    copies = report.read_tsv(metrics_dir / "eval_copies.tsv")  # None before the memorization check existed
    train_metrics = read_json(metrics_dir / "train.json", "", required=False)

    ids = [str(s["id"]) for s in samples]
    workers = len(samples) if n_jobs < 1 else n_jobs
    workers = max(1, min(workers, os.cpu_count() or 1, len(samples)))
    with atomic_dir(reports_dir) as tmp:
        (tmp / report.AUDIO_DIR).mkdir()
        (tmp / report.ROLLS_DIR).mkdir()
        calls = [(str(report.midi_path(samples_dir, s)), str(tmp / report.AUDIO_DIR / f"{sid}.wav"),
                  str(tmp / report.ROLLS_DIR / f"{sid}.png"), str(soundfont), int(cfg.sample_rate),
                  f"{s.get('composer') or 'unknown'} — {s.get('kind') or 'free'} — {sid}")
                 for s, sid in zip(samples, ids)]
        stats = dict(zip(ids, _run_all(calls, workers, progress)))
        figures = render_figures(metrics_dir, tmp)  # training curve + per-composer plots as images (offline)
        report.build_report(samples_dir, tmp, sample_metrics, eval_metrics, composers, train_metrics,
                            samples=samples, render_stats=stats, figures=figures, copies_rows=copies)
    return {
        "n_samples": len(samples),
        "audio_seconds": float(sum(r["seconds"] for r in stats.values())),
        "silent": [sid for sid, r in stats.items() if r["rms"] < report.SILENT_RMS],
        "wall_seconds": time.monotonic() - started,
        "index": str(reports_dir / report.INDEX),
    }


def run(cfg, seed: int | None, paths) -> dict[str, Any]:
    """The render stage (stage contract: mozart/paths.py RenderPaths). Deterministic (no seed)."""
    return render_reports(paths.samples_dir, paths.metrics_dir, paths.reports_dir, cfg)
