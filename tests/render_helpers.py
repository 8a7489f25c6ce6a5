"""Fixtures for the render/report tests, built in code with symusic: short MIDI files, a fake data/samples/ and
metrics/ like the sample and evaluate stages write."""
from __future__ import annotations

from html.parser import HTMLParser

import json
from pathlib import Path
from typing import Sequence

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
HOSTILE = "<script>alert(1)</script>"
TPQ = 480


def write_midi(path: Path, notes: Sequence[tuple[float, float, int]], bpm: float = 120.0, velocity: int = 90) -> Path:
    """A one-track piano MIDI at `path`; notes are (start, duration) in quarter notes and a pitch."""
    from symusic import Note, Score, Tempo, Track

    score = Score(TPQ)
    score.tempos.append(Tempo(0, bpm))
    track = Track(name="piano", program=0)
    for start, dur, pitch in notes:
        track.notes.append(Note(int(start * TPQ), int(dur * TPQ), int(pitch), velocity))
    score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def scale_notes(n: int = 8, low: int = 60) -> list[tuple[float, float, int]]:
    """A rising major scale, one quarter note each: n quarters long (n/2 seconds at 120 bpm)."""
    steps = [0, 2, 4, 5, 7, 9, 11, 12]
    return [(float(i), 1.0, low + steps[i % 8] + 12 * (i // 8)) for i in range(n)]


def chord_notes(bars: int = 2) -> list[tuple[float, float, int]]:
    """Whole-bar triads: C, F, G, C, ..."""
    roots = [60, 65, 67, 60]
    return [(4.0 * b, 4.0, roots[b % 4] + k) for b in range(bars) for k in (0, 4, 7)]


EVAL = {
    "generated": {"h1": 2.3456, "h4": 2.8765, "gs": 0.9123, "note_density": 7.25, "pitch_range": 31.0,
                  "mean_polyphony": 2.5, "empty_bar_fraction": 0.0625, "n_bars": 16.0, "n_pieces": 2},
    "real": {"h1": 2.1111, "h4": 2.7222, "gs": 0.8333, "note_density": 9.5, "pitch_range": 40.0,
             "mean_polyphony": 3.1, "empty_bar_fraction": 0.0, "n_bars": 16.0, "n_pieces": 17},
    "gap": {"h1": 0.2345, "h4": 0.1543, "gs": 0.079},
    "test_bits_per_token": 2.4681,
    "test_tokens": 51583,
    "decodable_fraction": 0.875,
    "crop_bars": 16,
    "style_accuracy_cfg": 0.625,
    "style_accuracy_nocfg": 0.375,
    "real_test_style_accuracy": 0.8125,
    "style_chance": 0.1111,
    "style_majority_rate": 0.2,
    "n_style_cfg": 8,
    "n_style_nocfg": 8,
    "memorization": {"generated": {"copy2_share": 0.25, "copy4_share": 0.125, "max_bars": 5, "mean_bars": 0.9},
                     "real_test": {"copy2_share": 0.0588, "copy4_share": 0.0, "max_bars": 3, "mean_bars": 0.7}},
}
SAMPLE_METRICS = {"n_samples": 2, "n_free": 1, "n_continuations": 1, "tokens_per_s": 1234.5, "new_tokens": 900,
                  "generation_seconds": 0.73, "decodable_fraction": 1.0, "mean_bars": 2.0, "mean_seconds": 3.0,
                  "reached_target_fraction": 0.5, "grammar": True}
TRAIN = {"val_loss": 1.4945339262485504, "val_bits_per_token": 2.1561566838390958, "train_loss": 2.0952, "steps": 1000}
TRAIN_CURVE_TSV = ("step\ttrain_loss\tval_loss\tlr\n100\t3.3\t1.95\t0.00099\n200\t2.46\t1.88\t0.00094\n"
                   "300\t2.1\t1.7\t0.0008\n")
COMPOSER_TSV = ("composer\tstyle_accuracy\tstyle_accuracy_nocfg\ttest_bits_per_token\tn_generated\th1\th4\tgs\n"
                "Bach\t0.75\t0.5\t2.31415\t1\t2.2\t2.7\t0.91\n"
                f"{HOSTILE}\t0.5\t0.25\t2.71828\t1\t2.4\t2.9\t0.93\n")
# metrics/eval_copies.tsv (mozart.evaluation.memorization): the free sample copies 5 bars of a training piece
COPIES_TSV = ("sample\tpath\tcomposer\tcfg_scale\tcopied_bars\ttrain_piece\ttrain_row\ttrain_bar\tsample_bar\n"
              "free-01-bach-cfg1.5-1\tfree-01-bach-cfg1.5-1.mid\tBach\t1.5\t5\tBach/bwv-846\t7\t3\t1\n")


def sample_record(sid: str, composer: str, composer_id: int, kind: str = "free", **extra) -> dict:
    record = {"id": sid, "kind": kind, "composer": composer, "composer_id": composer_id, "cfg_scale": 1.5,
              "temperature": 0.95, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.1, "bpm": 120.0, "n_bars": 2,
              "n_tokens": 40, "seconds": 4.0, "decodable": True, "path": f"{sid}.mid", "token_ids": [1, 2, 3],
              "prompt_piece_id": None, "prompt_bars": None}
    if kind == "continuation":
        record.update(prompt_piece_id="Bach/prelude-1", prompt_bars=1, cfg_scale=1.0)
    record.update(extra)
    return record


def make_fixture(root: Path, composer_tsv: bool = True, train: bool = True) -> dict:
    """root/data/samples (2 short MIDI samples + manifest.json) and root/metrics (sample.json, eval.json and,
    optionally, eval_composers.tsv + eval_copies.tsv, train.json and train_curve.tsv). Returns {"samples_dir",
    "metrics_dir", "reports_dir", "ids"}."""
    samples_dir, metrics_dir = root / "data" / "samples", root / "metrics"
    records = [sample_record("free-01-bach-cfg1.5-1", "Bach", 1),
               sample_record("cont-1-hostile", HOSTILE, 2, kind="continuation",
                             metrics={"h1": 1.8765, "h4": 2.4321, "gs": 0.7777, "n_notes": 6})]
    write_midi(samples_dir / records[0]["path"], scale_notes(8))
    write_midi(samples_dir / records[1]["path"], chord_notes(2))
    (samples_dir / "manifest.json").write_text(json.dumps({"settings": {"seed": 0}, "samples": records}, indent=1))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / "sample.json").write_text(json.dumps(SAMPLE_METRICS))
    (metrics_dir / "eval.json").write_text(json.dumps(EVAL))
    if composer_tsv:  # the evaluate stage's tables: absent together in the optional-inputs test
        (metrics_dir / "eval_composers.tsv").write_text(COMPOSER_TSV)
        (metrics_dir / "eval_copies.tsv").write_text(COPIES_TSV)
    if train:
        (metrics_dir / "train.json").write_text(json.dumps(TRAIN))
        (metrics_dir / "train_curve.tsv").write_text(TRAIN_CURVE_TSV)
    return {"samples_dir": samples_dir, "metrics_dir": metrics_dir, "reports_dir": root / "reports",
            "ids": [r["id"] for r in records], "records": records}


def render_cfg(soundfont: Path | str = SOUNDFONT, sample_rate: int = 22050):
    from mozart.config import RenderConfig

    return RenderConfig(soundfont=str(soundfont), sample_rate=sample_rate)


class Elements(HTMLParser):
    """Tags with their attributes, and the page's visible text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html_text: str) -> Elements:
    p = Elements()
    p.feed(html_text)
    return p
