"""mozart.report.render: WAV rendering through FluidSynth, piano-roll PNGs and the render stage (render_reports), on MIDI
files and sample folders built in code."""
from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from mozart.errors import MozartError
from mozart.report.render import NOTE_COLOR, RELEASE_TAIL_S, render_piano_roll, render_reports, render_wav
from render_helpers import SOUNDFONT, chord_notes, make_fixture, parse, render_cfg, scale_notes, write_midi

pytestmark = pytest.mark.skipif(not SOUNDFONT.is_file(), reason=f"{SOUNDFONT} is not installed (fluid-soundfont-gm)")

RATE = 22050


def _read_wav(path):
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        rate, frames = w.getframerate(), w.getnframes()
        data = np.frombuffer(w.readframes(frames), dtype="<i2").reshape(-1, 2).astype(np.float64) / 32768.0
    return rate, data


def _note_pixels(png_path) -> int:
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png_path))[..., :3]
    target = np.array([int(NOTE_COLOR[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return int((np.abs(img - target).max(axis=-1) < 0.03).sum())


def test_wav_of_notes_is_audible_and_as_long_as_the_music(tmp_path):
    midi = write_midi(tmp_path / "scale.mid", scale_notes(8))  # 8 quarters at 120 bpm = 4 s
    wav = tmp_path / "out" / "scale.wav"
    stats = render_wav(midi, wav, SOUNDFONT, sample_rate=RATE)

    rate, data = _read_wav(wav)
    assert rate == RATE
    seconds = len(data) / rate
    assert stats["seconds"] == pytest.approx(seconds, abs=1e-6)
    assert seconds == pytest.approx(4.0 + RELEASE_TAIL_S, abs=0.05)  # the music plus the release tail
    rms = float(np.sqrt(np.mean(data ** 2)))
    assert rms > 0.005, f"rendered WAV is (nearly) silent: rms {rms}"
    assert stats["rms"] == pytest.approx(rms, rel=1e-3)
    assert stats["peak"] == pytest.approx(float(np.abs(data).max()), abs=1e-4) and stats["peak"] < 1.0
    # sound throughout the music, not only at the start: every half second of the 4 s has energy
    for k in range(8):
        chunk = data[int(k * 0.5 * rate):int((k + 1) * 0.5 * rate)]
        assert np.sqrt(np.mean(chunk ** 2)) > 0.002, f"half-second {k} is silent"
    # the release tail decays: its last 0.2 s is much quieter than the music
    assert np.sqrt(np.mean(data[-int(0.2 * rate):] ** 2)) < rms / 4
    assert not list(wav.parent.glob(".*.tmp"))  # the atomic write left no temporary file


def test_longer_music_gives_a_longer_wav(tmp_path):
    short = render_wav(write_midi(tmp_path / "a.mid", chord_notes(1)), tmp_path / "a.wav", SOUNDFONT, RATE)
    long = render_wav(write_midi(tmp_path / "b.mid", chord_notes(3)), tmp_path / "b.wav", SOUNDFONT, RATE)
    assert long["seconds"] - short["seconds"] == pytest.approx(4.0, abs=0.05)  # two more 4/4 bars at 120 bpm


def test_empty_midi_renders_a_silent_release_tail(tmp_path):
    midi = write_midi(tmp_path / "empty.mid", [])
    wav = tmp_path / "empty.wav"
    stats = render_wav(midi, wav, SOUNDFONT, sample_rate=RATE)
    rate, data = _read_wav(wav)
    assert stats["seconds"] == pytest.approx(RELEASE_TAIL_S, abs=1e-3) == len(data) / rate
    # silent up to FluidSynth's dither: at most one least significant bit (render.py's docstring says exactly 0)
    one_lsb = 1 / 32768
    assert stats["peak"] <= one_lsb and stats["rms"] < 1e-4
    assert float(np.abs(data).max()) <= one_lsb


def test_missing_soundfont_is_a_clear_error_naming_the_path(tmp_path):
    midi = write_midi(tmp_path / "a.mid", scale_notes(4))
    missing = tmp_path / "nowhere" / "Piano.sf2"
    wav = tmp_path / "a.wav"
    with pytest.raises(MozartError) as err:
        render_wav(midi, wav, missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    assert not wav.exists()


def test_missing_midi_is_a_clear_error(tmp_path):
    with pytest.raises(MozartError, match="not found"):
        render_wav(tmp_path / "absent.mid", tmp_path / "x.wav", SOUNDFONT, RATE)


def test_piano_roll_png_shows_the_notes(tmp_path):
    import matplotlib.image as mpimg

    full = tmp_path / "rolls" / "full.png"
    render_piano_roll(write_midi(tmp_path / "full.mid", chord_notes(4)), full, "Bach — free — s1")
    assert full.is_file() and full.stat().st_size > 5000
    img = mpimg.imread(str(full))
    assert img.shape[:2] == (400, 1200)
    assert float(img[..., :3].std()) > 0.05  # not a blank canvas

    # same axes as `full` (4 bars, pitches 60..74) but only two short notes
    sparse = tmp_path / "sparse.png"
    render_piano_roll(write_midi(tmp_path / "sparse.mid", [(0, 0.5, 60), (15.5, 0.5, 74)]), sparse, "two notes")
    empty = tmp_path / "empty.png"
    render_piano_roll(write_midi(tmp_path / "empty.mid", []), empty, "nothing")
    assert empty.is_file()
    # 12 whole-bar notes cover far more note colour than 2 eighth notes; an empty piece has none
    assert _note_pixels(full) > 10 * _note_pixels(sparse) > 0
    assert _note_pixels(empty) == 0


def test_piano_roll_title_is_plain_text_even_with_dollar_signs(tmp_path):
    # composer names are user data: matplotlib would parse "$^$" as broken mathtext and crash
    png = tmp_path / "r.png"
    render_piano_roll(write_midi(tmp_path / "a.mid", scale_notes(4)), png, r"Bach $^$ \frac{ $")
    assert png.is_file() and png.stat().st_size > 1000


# ------------------------------------------------------------------------------- render_reports (the render stage)

def _wav_rms(path: Path) -> float:
    _, data = _read_wav(path)
    return float(np.sqrt(np.mean(data ** 2)))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".reports"))


def test_render_reports_writes_page_audio_and_rolls(tmp_path):
    fx = make_fixture(tmp_path)
    reports = fx["reports_dir"]
    reports.mkdir()
    (reports / "stale.txt").write_text("from an earlier run")
    summary = render_reports(fx["samples_dir"], fx["metrics_dir"], reports, render_cfg(), n_jobs=2, progress=False)

    assert summary["n_samples"] == 2 and summary["silent"] == []
    assert summary["audio_seconds"] == pytest.approx((4 + 1.5) + (4 + 1.5), abs=0.1)  # 2 bars each + tails
    assert not (reports / "stale.txt").exists()  # the folder was replaced whole
    assert sorted(p.name for p in (reports / "audio").iterdir()) == sorted(f"{i}.wav" for i in fx["ids"])
    assert sorted(p.name for p in (reports / "rolls").iterdir()) == sorted(f"{i}.png" for i in fx["ids"])
    for i in fx["ids"]:
        assert _wav_rms(reports / "audio" / f"{i}.wav") > 0.005
        assert (reports / "rolls" / f"{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = parse((reports / "index.html").read_text(encoding="utf-8"))
    srcs = [a["src"] for t, a in page.tags if t in ("audio", "img")]
    # 2 players, 2 rolls, the training-curve and per-composer figures: every reference resolves on disk
    assert len(srcs) == 6 and all((reports / s).is_file() for s in srcs)
    assert "62.5%" in " ".join(page.text) and "2.718" in " ".join(page.text)
    assert "copies 5 bars of Bach/bwv-846" in " ".join(page.text)  # metrics/eval_copies.tsv reached the page
    assert _leftovers(tmp_path) == []


def test_missing_soundfont_leaves_the_old_report(tmp_path):
    fx = make_fixture(tmp_path)
    reports = fx["reports_dir"]
    (reports / "audio").mkdir(parents=True)
    (reports / "index.html").write_text("<p>earlier report</p>")
    missing = tmp_path / "no" / "Grand.sf2"
    with pytest.raises(MozartError) as err:
        render_reports(fx["samples_dir"], fx["metrics_dir"], reports, render_cfg(missing), progress=False)
    assert str(missing) in str(err.value)
    assert (reports / "index.html").read_text() == "<p>earlier report</p>"
    assert sorted(p.name for p in reports.iterdir()) == ["audio", "index.html"]
    assert _leftovers(tmp_path) == []


def test_failure_midway_leaves_the_old_report(tmp_path):
    fx = make_fixture(tmp_path)
    reports = fx["reports_dir"]
    reports.mkdir()
    (reports / "index.html").write_text("<p>earlier report</p>")
    # the second sample's MIDI is corrupt: the first one renders, then the stage fails
    (fx["samples_dir"] / fx["records"][1]["path"]).write_bytes(b"MThd this is not a MIDI file")
    with pytest.raises(MozartError, match="cannot read MIDI"):
        render_reports(fx["samples_dir"], fx["metrics_dir"], reports, render_cfg(), n_jobs=1, progress=False)
    assert sorted(p.name for p in reports.iterdir()) == ["index.html"]
    assert (reports / "index.html").read_text() == "<p>earlier report</p>"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("remove, needle", [("metrics/eval.json", "eval.json"),
                                            ("metrics/sample.json", "sample.json"),
                                            ("data/samples/manifest.json", "manifest.json"),
                                            ("data/samples/free-01-bach-cfg1.5-1.mid", "free-01-bach-cfg1.5-1.mid")])
def test_missing_inputs_are_clear_errors(tmp_path, remove, needle):
    fx = make_fixture(tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(MozartError) as err:
        render_reports(fx["samples_dir"], fx["metrics_dir"], fx["reports_dir"], render_cfg(), progress=False)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not fx["reports_dir"].exists() and _leftovers(tmp_path) == []


def test_optional_inputs_may_be_absent(tmp_path):
    fx = make_fixture(tmp_path, composer_tsv=False, train=False)
    render_reports(fx["samples_dir"], fx["metrics_dir"], fx["reports_dir"], render_cfg(), n_jobs=1, progress=False)
    text = (fx["reports_dir"] / "index.html").read_text(encoding="utf-8")
    assert "eval_composers.tsv is absent" in text and "2.346" in text and "copies 5 bars" not in text


def test_render_stage_script(tmp_path):
    from stage_helpers import assert_one_line_error, make_repo_copy, run_stage

    root = make_repo_copy(tmp_path / "repo", {"render.sample_rate": 22050})
    make_fixture(root)
    proc = run_stage(root, "render", timeout=120, check=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("render:")]
    assert len(lines) == 1 and "2 samples" in lines[0], proc.stdout
    assert (root / "reports" / "index.html").is_file()
    assert len(list((root / "reports" / "audio").glob("*.wav"))) == 2
    assert len(list((root / "reports" / "rolls").glob("*.png"))) == 2

    shutil.rmtree(root / "data" / "samples")
    proc = run_stage(root, "render", timeout=120)
    assert_one_line_error(proc, "manifest.json")
    assert (root / "reports" / "index.html").is_file()  # the earlier report survives the failed run
