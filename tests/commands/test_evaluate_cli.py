"""`mozart evaluate`: table and --json output, recursion, unreadable files, and error cases."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from metrics_helpers import BAR, TPQ, make_score, random_notes
from mozart.cli import main


@pytest.fixture
def midi_dir(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "a" / "deep").mkdir(parents=True)
    make_score(random_notes(rng, 6)).dump_midi(str(tmp_path / "a" / "one.mid"))
    make_score(random_notes(rng, 9)).dump_midi(str(tmp_path / "a" / "deep" / "two.MIDI"))
    make_score([(b * BAR, TPQ, 60) for b in range(5)]).dump_midi(str(tmp_path / "three.mid"))
    (tmp_path / "notes.txt").write_text("not music")  # not a .mid: ignored by the folder search
    return tmp_path


def _run(capsys, argv):
    code = main(["evaluate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_files_and_mean(capsys, midi_dir):
    code, out, _ = _run(capsys, [str(midi_dir), "--json"])
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"files", "mean"}
    assert sorted(p.rsplit("/", 1)[1] for p in (f["path"] for f in result["files"])) == \
        ["one.mid", "three.mid", "two.MIDI"]
    for row in result["files"]:
        assert {"path", "n_bars", "h1", "h4", "gs", "note_density", "pitch_range", "mean_polyphony",
                "empty_bar_fraction"} <= set(row)
    three = next(f for f in result["files"] if f["path"].endswith("three.mid"))
    assert three["n_bars"] == 5 and three["h1"] == 0.0 and three["gs"] == 1.0
    h1s = [f["h1"] for f in result["files"] if f["h1"] is not None]
    assert result["mean"]["h1"] == pytest.approx(sum(h1s) / len(h1s))


def test_grid_option_changes_gs(capsys, tmp_path):
    # onsets at steps 0 and 1/64 of a bar: distinct on a 64 grid, merged on a 4 grid
    path = tmp_path / "x.mid"
    make_score([(0, 10, 60), (BAR + BAR // 64, 10, 60)]).dump_midi(str(path))
    gs = {g: json.loads(_run(capsys, [str(path), "--json", "--grid", str(g)])[1])["files"][0]["gs"] for g in (64, 4)}
    assert gs[4] == 1.0 and gs[64] == pytest.approx(1 - 2 / 64)


def test_table_lists_files_and_mean(capsys, midi_dir):
    code, out, _ = _run(capsys, [str(midi_dir / "three.mid"), str(midi_dir / "a")])
    lines = out.strip().split("\n")
    assert code == 0 and lines[0].split()[:4] == ["file", "n_bars", "n_notes", "h1"]
    assert any(line.startswith("three.mid") for line in lines)
    assert lines[-1].startswith("mean (3 files)")


def test_unreadable_file_is_reported_and_skipped(capsys, midi_dir):
    bad = midi_dir / "broken.mid"
    bad.write_bytes(b"MThd garbage")
    code, out, err = _run(capsys, [str(midi_dir), "--json"])
    result = json.loads(out)
    assert code == 0
    broken = [f for f in result["files"] if f["path"].endswith("broken.mid")]
    assert len(broken) == 1 and broken[0]["error"] and "h1" not in broken[0]
    assert "broken.mid" in err
    assert len(result["files"]) == 4 and result["mean"]["n_bars"] is not None


def test_only_unreadable_files_exit_non_zero(capsys, tmp_path):
    (tmp_path / "bad.mid").write_bytes(b"nope")
    code, out, err = _run(capsys, [str(tmp_path), "--json"])
    assert code == 1 and json.loads(out)["files"][0]["error"] and "none of the 1 files" in err


@pytest.mark.parametrize("case", ["empty_dir", "missing", "bad_grid"])
def test_errors_are_one_line_and_non_zero(capsys, tmp_path, midi_dir, case):
    argv = {"empty_dir": [str(tmp_path / "empty")], "missing": [str(tmp_path / "nope.mid")],
            "bad_grid": [str(midi_dir), "--grid", "0"]}[case]
    (tmp_path / "empty").mkdir()
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mozart evaluate: error:")


def test_command_does_not_import_torch(midi_dir):
    code = ("import sys; from mozart.cli import main; rc = main(['evaluate', sys.argv[1], '--json']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(midi_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "NO_TORCH" in proc.stderr
