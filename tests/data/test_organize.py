"""The organize stage end to end on small fixture trees: accounting, duplicates, rejections, safe output."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from symusic import Score

import mozart.data.organize as organize_module
from mozart.config import OrganizeConfig
from mozart.errors import MozartError
from mozart.data.organize import MANIFEST_COLUMNS, diagnose, organize
from organize_helpers import midi_bytes, write_midi, write_tree

CFG = OrganizeConfig(source="unused", layout="auto", n_jobs=2, timeout_s=20)


def run_organize(src: Path, out: Path, cfg: OrganizeConfig = CFG) -> pd.DataFrame:
    organize(cfg, src, out)
    return pd.read_parquet(out / "manifest.parquet")


def test_duplicates_kept_once_and_bad_files_rejected_with_reasons(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_tree(src, ["Bach/prelude.mid", "Bach/fugue.mid", "Chopin/nocturne.mid"])
    (src / "Liszt").mkdir()
    (src / "Liszt/copy_of_prelude.mid").write_bytes((src / "Bach/prelude.mid").read_bytes())
    (src / "Liszt/empty.mid").write_bytes(b"")
    (src / "Liszt/text.mid").write_bytes(b"this is not a midi file at all")
    (src / "Liszt/truncated.mid").write_bytes(midi_bytes(5, 40)[:-30])
    silent = Score(480)
    silent.tracks.append(__import__("symusic").Track(name="empty", program=0))
    (src / "Liszt/silent.mid").write_bytes(silent.dumps_midi())
    (src / "Liszt/notes.txt").write_text("ignored: not a MIDI file name")

    summary = organize(CFG, src, out)
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 8 and manifest["source_path"].is_unique  # every input file exactly once
    assert (summary.files_in, summary.accepted, summary.duplicates, summary.rejected) == (8, 3, 1, 4)
    row = manifest.set_index("source_path")
    dup = row.loc["Liszt/copy_of_prelude.mid"]
    kept = row.loc["Bach/prelude.mid"]
    assert dup["status"] == "duplicate" and dup["reason"] == f"duplicate of {kept['piece_id']}"
    assert dup["work_id"] == kept["work_id"] and dup["content_hash"] == kept["content_hash"]
    assert dup["piece_id"] == "" and dup["out_path"] == ""
    assert row.loc["Liszt/empty.mid", "reason"] == "empty file"
    assert row.loc["Liszt/text.mid", "reason"] == "not a MIDI file"
    assert row.loc["Liszt/truncated.mid", "reason"] == "truncated track chunk"
    assert row.loc["Liszt/silent.mid", "reason"] == "no notes"
    accepted = manifest[manifest["status"] == "accepted"]
    assert accepted["piece_id"].is_unique and (accepted["reason"] == "").all()
    for _, r in accepted.iterrows():  # copied byte for byte, piece_id = out_path without .mid
        assert (out / r["out_path"]).read_bytes() == (src / r["source_path"]).read_bytes()
        assert r["out_path"] == r["piece_id"] + ".mid"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mid"))
    assert written == sorted(accepted["out_path"])


def test_hostile_composer_names_stay_inside_the_output(tmp_path):
    src, out = tmp_path / "src", tmp_path / "box" / "organized"
    names = ["../../escape", "/abs/path", "CON", "..", "bad\\name", "x" * 400, "", "naïve ünïcode"]
    lines = ["composer,title,midi"]
    for i, name in enumerate(names):
        write_midi(src / f"f{i}.mid", seed=i + 1)
        lines.append(f'"{name}",{name or "t"},f{i}.mid')
    (src / "metadata.csv").write_text("\n".join(lines) + "\n")
    manifest = run_organize(src, out)
    assert (manifest["status"] == "accepted").all()
    assert sorted(os.listdir(tmp_path / "box")) == ["organized"]  # nothing beside the output
    for rel in manifest["out_path"]:
        assert (out / rel).resolve().is_relative_to(out.resolve()) and (out / rel).is_file()


def test_piece_names_are_made_unique(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_tree(src, ["Bach/a/piece.mid", "Bach/a_piece.mid", "bach/A Piece.mid"])  # all titled "a piece"
    manifest = run_organize(src, out, OrganizeConfig(layout="folder", n_jobs=1))
    assert manifest["piece_id"].str.casefold().is_unique
    assert set(manifest["composer"]) == {"Bach"}


def test_crash_and_timeout_reject_only_their_file(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_tree(src, ["Bach/ok.mid", "Bach/crash.mid", "Bach/hang.mid", "Bach/ok2.mid"])
    real_check = organize_module.check_midi

    def hostile_parser(path):  # workers are forked, so they inherit this stand-in for the MIDI parser
        if path.endswith("crash.mid"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if path.endswith("hang.mid"):
            time.sleep(60)
        return real_check(path)

    monkeypatch.setattr(organize_module, "check_midi", hostile_parser)
    manifest = run_organize(src, out, OrganizeConfig(n_jobs=2, timeout_s=2)).set_index("source_path")
    assert manifest.loc["Bach/crash.mid", "reason"].startswith("parser crashed")
    assert manifest.loc["Bach/hang.mid", "reason"] == "timeout after 2 s"
    assert manifest.loc["Bach/hang.mid", "content_hash"] != ""
    assert (manifest.loc[["Bach/ok.mid", "Bach/ok2.mid"], "status"] == "accepted").all()


def test_rerun_replaces_output_and_failure_keeps_old_output(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_tree(src, ["Bach/a.mid", "Bach/b.mid"])
    first = run_organize(src, out)
    (src / "Bach/b.mid").unlink()
    second = run_organize(src, out)
    assert len(first) == 2 and len(second) == 1 and not (out / "Bach/b.mid").exists()
    with pytest.raises(MozartError):
        organize(CFG, tmp_path / "missing", out)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "manifest.parquet"), second)


def test_diagnose_names_the_problem():
    good = midi_bytes(1)
    assert diagnose(b"") == "empty file"
    assert diagnose(b"RIFF....RMID") == "not a MIDI file (RIFF container)"
    assert diagnose(good[:10]) == "truncated header"
    assert diagnose(good[:8] + b"\x00\x01\x00\x00" + good[12:14]) == "zero tracks"
    assert diagnose(good[:-5]) == "truncated track chunk"
    assert diagnose(good[:14]) .startswith("truncated file")


@pytest.mark.shared
@pytest.mark.parametrize("corpus, n_files", [("piano-midi-de", 337), ("asap", 1302)])
def test_shared_corpora_are_fully_accounted_for(shared_corpora, tmp_path, corpus, n_files):
    src = shared_corpora / corpus
    summary = organize(CFG, src, tmp_path / "organized")
    manifest = pd.read_parquet(tmp_path / "organized" / "manifest.parquet")
    assert summary.files_in == len(manifest) == n_files
    assert summary.accepted + summary.duplicates + summary.rejected == n_files
    assert manifest["source_path"].is_unique and summary.layout == "csv"
    accepted = manifest[manifest["status"] == "accepted"]
    assert accepted["piece_id"].is_unique
    assert len(list((tmp_path / "organized").rglob("*.mid"))) == len(accepted)
    metadata = pd.read_csv(src / "metadata.csv")
    if corpus == "asap":  # every performance of one work (one folder) shares one work_id, and only that folder does
        work_of = manifest.set_index("source_path")["work_id"]
        for folder, rows in metadata.groupby("folder"):
            files = set(rows["midi_score"]) | set(rows["midi_performance"])
            assert work_of.loc[sorted(files)].nunique() == 1, folder
        # duplicates merge the works they link (the same recording under 18-2 and 18-2_no_repeat), never split one
        assert manifest["work_id"].nunique() <= metadata["folder"].nunique()
        assert work_of.loc["Beethoven/Piano_Sonatas/18-2/Schmitt01.mid"] == \
            work_of.loc["Beethoven/Piano_Sonatas/18-2_no_repeat/Schmitt01.mid"]
    else:  # "Christmas" is a collection of carol fantasias by several composers: no composer of its own
        audit = json.loads((tmp_path / "organized" / "composers.json").read_text())
        christmas = next(d for d in audit["labels"] if d["label"] == "Christmas")
        assert (christmas["composer"], christmas["how"]) == ("Unknown", "placeholder")
        assert not {"Christmas", "Traditional"} & set(manifest["composer"])
        assert summary.composers == metadata["composer"].nunique() - 1
