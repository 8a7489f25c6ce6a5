"""organize end to end on fixture corpora that mix every composer-label case: merges, placeholders, hyphenated
surnames, near names, user aliases, RIFF-wrapped MIDI, and the audit in composers.json."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from mozart.config import OrganizeConfig
from mozart.data.midi_check import UNWRAPPED_REASON, unwrap_riff
from mozart.data.organize import organize
from mozart.errors import DataError
from organize_helpers import midi_bytes, write_tree


def riff(payload: bytes, extra_chunk: bool = True) -> bytes:
    """`payload` in a RIFF RMID container, after an odd-sized chunk (padding) when `extra_chunk`."""
    body = b"RMID"
    if extra_chunk:
        body += b"INFO" + struct.pack("<I", 3) + b"abc\x00"
    body += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def run(src: Path, out: Path, **kwargs):
    summary = organize(OrganizeConfig(n_jobs=2, timeout_s=20, **kwargs), src, out)
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("source_path")
    audit = json.loads((out / "composers.json").read_text())
    return summary, manifest, audit


PREFIX_FILES = {  # file -> composer it must get
    "saint-saens-danse_macabre.mid": "Saint-Saens", "saint-saens-le_cygne.mid": "Saint-Saens",
    "rimsky-korsakov-flight.mid": "Rimsky-Korsakov", "vaughan-williams-lark.mid": "Vaughan Williams",
    "villa-lobos-choros.mid": "Villa-Lobos", "mozart-k545.mid": "Mozart", "mozzart-k331.mid": "Mozart",
    "Mozart - Rondo alla turca.mid": "Mozart", "Debusy - Clair de lune.mid": "Debussy",
    "debussy-arabesque.mid": "Debussy", "bach-prelude.mid": "Bach", "j_s_bach-fugue.mid": "Bach",
    "cpe_bach-solfeggietto.mid": "C.P.E. Bach", "schumann-traumerei.mid": "Schumann",
    "schumann_clara-romance.mid": "Clara Schumann", "strauss-waltz.mid": "Strauss",
    "unknown_artist-song1.mid": "Unknown", "unknown_artist-song2.mid": "Unknown", "anon-air.mid": "Unknown",
    "various_artists-medley.mid": "Unknown", "trad-greensleeves.mid": "Unknown", "himmel-lied.mid": "Himmel",
}


def write_prefix_corpus(src: Path) -> None:
    write_tree(src, list(PREFIX_FILES))
    (src / "chopin-nocturne.mid").write_bytes(riff(midi_bytes(101)))  # wrapped, readable
    (src / "mozart-k545_riff_copy.mid").write_bytes(riff((src / "mozart-k545.mid").read_bytes()))  # wrapped duplicate
    (src / "liszt-broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (src / "liszt-riff_text.mid").write_bytes(riff(b"not midi at all"))


def test_prefix_corpus_merges_spellings_and_keeps_composers_and_placeholders_apart(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_prefix_corpus(src)
    summary, manifest, audit = run(src, out)
    assert len(manifest) == len(PREFIX_FILES) + 4 == summary.files_in
    assert summary.accepted + summary.duplicates + summary.rejected == summary.files_in
    assert (summary.accepted, summary.duplicates, summary.rejected) == (len(PREFIX_FILES) + 1, 1, 2)
    for name, composer in PREFIX_FILES.items():
        assert manifest.loc[name, "composer"] == composer, name
    assert manifest.loc["chopin-nocturne.mid", "composer"] == "Chopin"
    accepted = manifest[manifest["status"] == "accepted"]
    assert set(accepted["composer"]) == {*PREFIX_FILES.values(), "Chopin"}  # nothing else appeared, nothing merged
    assert summary.composers == len(set(accepted["composer"])) - 1  # Unknown is no composer
    assert summary.unknown_composer == 5 and summary.placeholder_labels == 4
    assert (out / "Unknown").is_dir() and not (out / "Unknown_artist").exists()
    by_label = {d["label"]: d for d in audit["labels"]}
    assert by_label["saint-saens"]["how"] == "prefix" and by_label["rimsky-korsakov"]["composer"] == "Rimsky-Korsakov"
    assert by_label["mozzart"]["how"].startswith("fuzzy score") and by_label["mozzart"]["merged"]
    assert by_label["Debusy"]["how"].startswith("fuzzy score")
    assert by_label["strauss"]["how"] == "ambiguous" and by_label["himmel"]["how"] == "unmatched"
    assert by_label["unknown_artist"] == {"label": "unknown_artist", "composer": "Unknown", "how": "placeholder",
                                          "note": "names no composer", "merged": False, "files": 2}
    assert sum(d["files"] for d in audit["labels"]) == summary.files_in  # every file's label is in the audit
    assert audit["merged_labels"] == summary.merges == sum(d["merged"] for d in audit["labels"])
    assert summary.fuzzy_merges == 2 and f"{summary.merges} merges" in summary.line(out)
    assert sorted(audit["by_composer"]["Mozart"]) == ["Mozart", "mozart", "mozzart"]


def test_riff_wrapped_midi_is_unwrapped_and_other_unreadable_files_stay_rejected(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_prefix_corpus(src)
    _, manifest, _ = run(src, out)
    wrapped = manifest.loc["chopin-nocturne.mid"]
    assert wrapped["status"] == "accepted" and wrapped["reason"] == UNWRAPPED_REASON
    assert (out / wrapped["out_path"]).read_bytes() == midi_bytes(101)  # the MIDI file itself, ready for tokenize
    copy = manifest.loc["mozart-k545_riff_copy.mid"]
    assert copy["status"] == "duplicate" and copy["reason"] == f"duplicate of {manifest.loc['mozart-k545.mid', 'piece_id']}"
    assert manifest.loc["liszt-riff_text.mid", "reason"] == "not a MIDI file (RIFF container)"
    assert manifest.loc["liszt-broken.mid", "status"] == "rejected"
    assert unwrap_riff(riff(midi_bytes(3), extra_chunk=False)) == midi_bytes(3)
    assert unwrap_riff(b"RIFF\x04\x00\x00\x00WAVE") is None and unwrap_riff(midi_bytes(3)) is None


def test_folder_corpus_placeholders_get_no_composer_and_transliterations_merge(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    expected = {"Tschaikowsky/a.mid": "Tchaikovsky", "Tchaikovsky/b.mid": "Tchaikovsky",
                "Pyotr Ilyich Tchaikovsky/c.mid": "Tchaikovsky", "Christmas/carol.mid": "Unknown",
                "Unknown/x.mid": "Unknown", "Anonymous/y.mid": "Unknown", "Johann Strauss II/z.mid": "J. Strauss II",
                "Strauss, Richard/w.mid": "R. Strauss", "Schumann, Clara/r.mid": "Clara Schumann",
                "Schumann, Robert/s.mid": "Schumann", "loose.mid": "Unknown"}
    write_tree(src, list(expected))
    summary, manifest, audit = run(src, out)
    assert manifest["composer"].to_dict() == expected
    by_label = {d["label"]: d for d in audit["labels"]}
    assert by_label["Christmas"]["how"] == "placeholder" and "collection" in by_label["Christmas"]["note"]
    assert by_label[""]["how"] == "placeholder"  # a file outside any composer folder has no label
    assert summary.composers == 5 and summary.unknown_composer == 4


def test_composer_title_corpus_and_user_aliases_override_the_list(tmp_path):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_tree(src, ["Saint-Saëns - Danse macabre.mid", "Rachmaninov - Prelude.mid", "Rachmaninoff - Vocalise.mid",
                     "Unknown Artist - Song.mid", "Bach - Solfeggietto.mid", "Mystery - Piece.mid"])
    aliases = tmp_path / "aliases.csv"
    aliases.write_text("label,composer\nBach,C.P.E. Bach\nMystery,Gustav Holzmann\n")
    summary, manifest, audit = run(src, out, aliases=str(aliases))
    assert manifest["composer"].to_dict() == {
        "Saint-Saëns - Danse macabre.mid": "Saint-Saens", "Rachmaninov - Prelude.mid": "Rachmaninoff",
        "Rachmaninoff - Vocalise.mid": "Rachmaninoff", "Unknown Artist - Song.mid": "Unknown",
        "Bach - Solfeggietto.mid": "C.P.E. Bach", "Mystery - Piece.mid": "Gustav Holzmann"}
    by_label = {d["label"]: d for d in audit["labels"]}
    assert by_label["Bach"]["how"] == by_label["Mystery"]["how"] == "user alias"
    yaml_aliases = tmp_path / "aliases.yaml"
    yaml_aliases.write_text("Bach: Wilhelm Friedemann Bach\n")
    _, manifest, _ = run(src, out, aliases=str(yaml_aliases))
    assert manifest.loc["Bach - Solfeggietto.mid", "composer"] == "W.F. Bach"


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ("only_one_column\n", "two non-empty"),
                                              ("a: [unclosed\n", "not valid YAML")])
def test_a_bad_alias_table_fails_before_any_work_naming_the_file(tmp_path, content, message):
    src, out = tmp_path / "src", tmp_path / "organized"
    write_tree(src, ["Bach/a.mid"])
    path = tmp_path / ("aliases.yaml" if content and ":" in content else "aliases.csv")
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        organize(OrganizeConfig(n_jobs=1, aliases=str(path)), src, out)
    assert str(path) in str(err.value) and not out.exists()
