"""Render MIDI for listening and looking: a WAV through FluidSynth (mozart.report.audio) and a piano-roll PNG.

A MIDI file with no notes renders a short silent WAV rather than failing: the listening page should still show a
generated sample that came out empty, and its player makes the emptiness obvious.

`render_reports` is the render stage's library side: every sample of `data/samples/manifest.json` rendered in
parallel into a temporary folder, the page written by `mozart.report.page.build_report`, and that folder swapped in as
`reports/` whole (`atomic_dir`), so a failure at any point leaves the previous report untouched.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mozart.infra.atomic import atomic_path
from mozart.report.audio import (DEFAULT_SOUNDFONT, RELEASE_TAIL_S, _load_score,  # noqa: F401 (re-exported)
                                 check_soundfont, render_wav)

NOTE_COLOR = "#1f6fb2"   # piano-roll note fill; the screenshot test looks for this colour
NOTE_EDGE = "#0b3a61"
BAR_LINE_COLOR = "#9a9a9a"
BLACK_KEY_ROW = "#eef1f4"


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
