"""The embedded default corpus: selection, music21 -> MIDI conversion, determinism (mozart.data.music21_export)."""
from __future__ import annotations

import pandas as pd
import pytest

from mozart.errors import DataError
from mozart.paths import Music21Paths
from music21 import chord, meter, note, stream, tempo
from music21 import tie as m21tie
from symusic import Score

import mozart.data.music21_export as m21x
from mozart.config import OrganizeConfig
from mozart.data.organize import organize

SMALL = {"mozart": "Mozart, Wolfgang Amadeus", "schumann_clara": "Schumann, Clara"}


def test_default_selection_has_enough_composers_and_respects_caps():
    works = m21x.select_works(min_works=5, max_works=40)
    per_composer = pd.Series([w.composer for w in works]).value_counts()
    assert len(per_composer) >= 8 and per_composer.min() >= 5 and per_composer.max() <= 40
    assert {"Bach, Johann Sebastian", "Palestrina, Giovanni Pierluigi da", "Beethoven, Ludwig van"} <= set(per_composer.index)
    assert len({w.corpus_path for w in works}) == len(works)
    assert not any(w.corpus_path.endswith(".rntxt") for w in works)  # analyses are not music to play
    # one format per piece: beethoven/opus18no1 ships as .krn and .mxl
    stems = [w.corpus_path.rsplit(".", 1)[0] for w in works]
    assert len(stems) == len(set(stems))
    assert m21x.select_works(5, 40) == works  # static, deterministic selection
    capped = m21x.select_works(min_works=3, max_works=3)
    assert pd.Series([w.composer for w in capped]).value_counts().max() == 3
    assert len(m21x.select_works(min_works=10_000, max_works=0)) == 0


def test_score_to_midi_merges_ties_and_keeps_chords_and_tempo():
    part = stream.Part()
    part.append(tempo.MetronomeMark(number=90))
    part.append(meter.TimeSignature("3/4"))
    first = note.Note("C4", quarterLength=1.0)
    first.tie = m21tie.Tie("start")
    second = note.Note("C4", quarterLength=1.0)
    second.tie = m21tie.Tie("stop")
    part.append([first, second, chord.Chord(["E4", "G4"], quarterLength=0.5)])
    score = stream.Score([part])
    midi = m21x.score_to_midi(score)
    notes = sorted((n.time, n.duration, n.pitch) for n in midi.tracks[0].notes)
    tpq = m21x.TICKS_PER_QUARTER
    assert notes == [(0, 2 * tpq, 60), (2 * tpq, tpq // 2, 64), (2 * tpq, tpq // 2, 67)]
    assert round(midi.tempos[0].qpm) == 90
    assert (midi.time_signatures[0].numerator, midi.time_signatures[0].denominator) == (3, 4)


def test_small_export_is_valid_midi_and_byte_identical_run_to_run(tmp_path):
    first = m21x.export_corpus(tmp_path / "a", min_works=2, max_works=2, timeout_s=120, n_jobs=2, collections=SMALL)
    second = m21x.export_corpus(tmp_path / "b", min_works=2, max_works=2, timeout_s=120, n_jobs=2, collections=SMALL)
    assert len(first) == 4 and all(reason == "" for _, _, reason in first)
    assert {w.composer for w, _, _ in first} == set(SMALL.values())
    for (work, path_a, _), (_, path_b, _) in zip(first, second):
        score = Score(str(path_a))  # symusic reads it
        assert score.note_num() > 0 and len(score.tracks) >= 1
        assert path_a.read_bytes() == path_b.read_bytes(), work.corpus_path


def test_the_music21_stage_exports_and_organize_reads_the_export_with_its_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(m21x, "COLLECTIONS", SMALL)
    cfg = OrganizeConfig(min_works_per_composer=2, max_works_per_composer=2, n_jobs=2, timeout_s=120)
    exported = m21x.run(cfg, None, Music21Paths.under(tmp_path))
    assert exported == {"works": 4, "converted": 4, "used": 1}
    out = tmp_path / "data" / "organized"
    summary = organize(cfg, tmp_path / "data" / "music21", out)
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert summary.layout == "music21" and summary.files_in == 4 and summary.accepted == 4
    assert set(manifest["composer"]) == {"Mozart", "Clara Schumann"}
    assert manifest["source_path"].str.startswith("music21:").all()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["music21", "organized"]  # no caches elsewhere
    assert sorted(p.name for p in out.iterdir()) == ["Clara Schumann", "Mozart", "composers.json", "manifest.parquet"]


def test_the_music21_stage_skips_the_export_when_organize_reads_another_folder(tmp_path):
    cfg = OrganizeConfig(source=str(tmp_path / "my_corpus"))
    assert m21x.run(cfg, None, Music21Paths.under(tmp_path)) == {"works": 0, "converted": 0, "used": 0}
    with pytest.raises(DataError, match="empty music21 export"):
        m21x.read_export(tmp_path / "data" / "music21")


def test_failed_conversion_is_a_rejected_row(tmp_path, monkeypatch):
    def broken(source, out_path):
        if "k155" in str(source):
            raise ValueError("badly formed repeats")
        return real(source, out_path)

    real = m21x.export_work
    monkeypatch.setattr(m21x, "export_work", broken)
    results = m21x.export_corpus(tmp_path, min_works=2, max_works=2, timeout_s=120, n_jobs=1,
                                 collections={"mozart": "Mozart"})
    reasons = {w.corpus_path: reason for w, _, reason in results}
    assert reasons["mozart/k155/movement1.mxl"].startswith("music21 conversion failed: ValueError: badly formed")
    assert sum(r == "" for r in reasons.values()) == 1
