"""Issue 16, point 5: one bad file is one bad row. `mozart evaluate DIR` reports unreadable and degenerate files
(0 ticks per quarter, absurdly long) as rows with an error and still scores every other file."""
from __future__ import annotations

import json

import pytest

from mozart.cli import main
from mozart.evaluation.metrics import evaluate_files, file_metrics
from sampling_helpers import scale_score, write_midi, write_zero_tpq_midi


@pytest.fixture
def mixed_dir(tmp_path):
    write_midi(scale_score(6, seed=1), tmp_path / "good-1.mid")
    write_midi(scale_score(8, seed=2), tmp_path / "good-2.mid")
    write_zero_tpq_midi(tmp_path / "zero-tpq.mid")
    (tmp_path / "garbage.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    good = (tmp_path / "good-1.mid").read_bytes()
    (tmp_path / "truncated.mid").write_bytes(good[:len(good) // 3])
    return tmp_path


def test_a_zero_ticks_per_quarter_file_is_an_error_row_not_a_crash(tmp_path):
    row = file_metrics(write_zero_tpq_midi(tmp_path / "z.mid"))
    assert set(row) == {"path", "error"} and "0 ticks per quarter" in row["error"]


def test_a_file_hours_long_is_an_error_row(tmp_path):
    import symusic

    score = scale_score(1, tpq=1)
    score.tracks[0].notes.append(symusic.Note(2_000_000_000, 1, 60, 64))  # 500 million bars of 4/4
    row = file_metrics(write_midi(score, tmp_path / "long.mid"))
    assert "too long to measure" in row["error"]


def test_evaluate_scores_the_good_files_and_lists_each_bad_one(mixed_dir, capsys):
    code = main(["evaluate", str(mixed_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    rows = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(out)["files"]}
    assert len(rows) == 5
    for name in ("good-1.mid", "good-2.mid"):
        assert "error" not in rows[name] and rows[name]["n_bars"] > 0
    assert "0 ticks per quarter" in rows["zero-tpq.mid"]["error"]
    for name in ("zero-tpq.mid", "garbage.mid", "truncated.mid"):
        assert rows[name]["error"], name
        assert sum(name in line for line in err.splitlines()) == 1, err  # one stderr line per bad file
    mean = json.loads(out)["mean"]
    expected = (rows["good-1.mid"]["n_notes"] + rows["good-2.mid"]["n_notes"]) / 2
    assert mean["n_notes"] == pytest.approx(expected)


def test_the_table_shows_the_mean_over_the_good_files_and_the_bad_ones_after(mixed_dir, capsys):
    assert main(["evaluate", str(mixed_dir)]) == 0
    out = capsys.readouterr().out
    assert "mean (2 files)" in out
    assert sum(line.startswith("unreadable:") for line in out.splitlines()) == 3


def test_the_library_entry_point_keeps_going_too(mixed_dir):
    result = evaluate_files(sorted(mixed_dir.glob("*.mid")))
    assert sum("error" in r for r in result["files"]) == 3 and result["mean"]["n_bars"] > 0
