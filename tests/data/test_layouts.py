"""Every organize.layout parses small fixture trees right, and `auto` picks the right one (mozart.data.organize)."""
from __future__ import annotations

import pytest

from mozart.errors import MozartError
from mozart.data.organize import collect_files, detect_layout, list_midi_files
from organize_helpers import write_midi, write_tree


def by_path(files):
    return {f.source_path: f for f in files}


def test_folder_layout_takes_composer_from_the_first_folder(tmp_path):
    write_tree(tmp_path, ["Bach/Fugue/bwv_846.mid", "Chopin/op28_no4.MIDI", "loose.mid"])
    layout, files = collect_files(tmp_path, "folder")
    got = by_path(files)
    assert layout == "folder" and len(files) == 3
    assert (got["Bach/Fugue/bwv_846.mid"].composer, got["Bach/Fugue/bwv_846.mid"].title) == ("Bach", "Fugue bwv 846")
    assert got["Chopin/op28_no4.MIDI"].composer == "Chopin"
    assert got["loose.mid"].composer == ""  # no composer folder: normalised to Unknown later


def test_giantmidi_layout_splits_surname_firstname_title_id(tmp_path):
    write_tree(tmp_path, ["Bach, Johann Sebastian, Prelude and Fugue in C major, BWV 846, 2dIpvbNcJdA.mid",
                          "Chopin, Frédéric, Nocturne Op. 9 No. 2, aB3_dE-fGh1.mid"])
    layout, files = collect_files(tmp_path, "auto")
    assert layout == "giantmidi"
    got = {f.title: f.composer for f in files}
    assert got == {"Prelude and Fugue in C major, BWV 846": "Bach, Johann Sebastian",
                   "Nocturne Op. 9 No. 2": "Chopin, Frédéric"}


def test_prefix_layout_splits_at_the_first_dash(tmp_path):
    write_tree(tmp_path, ["chopin-nocturne_op9-2.mid", "mozart-k545.mid", "untitled.mid"])
    layout, files = collect_files(tmp_path, "auto")
    assert layout == "prefix"
    got = {f.source_path: (f.composer, f.title) for f in files}
    assert got["chopin-nocturne_op9-2.mid"] == ("chopin", "nocturne op9-2")
    assert got["mozart-k545.mid"] == ("mozart", "k545")
    assert got["untitled.mid"] == ("", "untitled")


def write_asap_like(root):
    write_tree(root, ["Bach/Fugue/bwv_846/midi_score.mid", "Bach/Fugue/bwv_846/Shi05M.mid",
                      "Bach/Fugue/bwv_846/Lee01M.mid", "Chopin/Etudes_op_10/3/midi_score.mid",
                      "Chopin/Etudes_op_10/3/Kim02.mid", "Chopin/Etudes_op_10/3/unlisted.mid"])
    (root / "metadata.csv").write_text(
        "composer,title,folder,midi_score,midi_performance\n"
        "Bach,Fugue_bwv_846,Bach/Fugue/bwv_846,Bach/Fugue/bwv_846/midi_score.mid,Bach/Fugue/bwv_846/Shi05M.mid\n"
        "Bach,Fugue_bwv_846,Bach/Fugue/bwv_846,Bach/Fugue/bwv_846/midi_score.mid,Bach/Fugue/bwv_846/Lee01M.mid\n"
        "Chopin,Etudes_op_10_3,Chopin/Etudes_op_10/3,Chopin/Etudes_op_10/3/midi_score.mid,"
        "Chopin/Etudes_op_10/3/Kim02.mid\n")


def test_csv_layout_asap_style_score_and_performances(tmp_path):
    write_asap_like(tmp_path)
    layout, files = collect_files(tmp_path, "auto")
    assert layout == "csv"
    got = by_path(files)
    assert len(files) == 6  # the score listed twice is one input file; the unlisted file is not lost
    bach = [f for f in files if f.source_path.startswith("Bach/")]
    assert {f.work_key for f in bach} == {"Bach/Fugue/bwv_846"}
    assert len({f.title for f in bach}) == 3  # performances keep distinct titles
    assert got["Bach/Fugue/bwv_846/Shi05M.mid"].title == "Fugue bwv 846 (Shi05M)"
    assert got["Chopin/Etudes_op_10/3/unlisted.mid"].composer == "Chopin"  # from its listed neighbours


def test_csv_layout_piano_midi_de_style_with_case_mismatch(tmp_path):
    write_tree(tmp_path, ["midis/Schubert/schubert_d850_1.mid", "midis/Christmas/bk_xmas1.mid",
                          "midis/Grieg/grieg_lyric.mid", "midis/Extra/new_piece.mid"])
    (tmp_path / "metadata.csv").write_text(
        "composer,title,year,midi,duration\n"
        "Schubert,Sonata_D850_1,1825,midis/Schubert/schubert_D850_1.mid,100\n"
        "Christmas,Heinrich_Lichner_Fantasia,,midis/Christmas/bk_xmas1.mid,300\n"
        "Grieg,Lyric_Piece,1867,midis/Grieg/grieg_lyric.mid,60\n"
        "Grieg,Missing_file,1867,midis/Grieg/not_there.mid,60\n")
    layout, files = collect_files(tmp_path, "auto")
    got = by_path(files)
    assert layout == "csv" and len(files) == 4
    assert got["midis/Schubert/schubert_d850_1.mid"].title == "Sonata D850 1"  # matched despite D850 vs d850
    assert got["midis/Christmas/bk_xmas1.mid"].composer == "Christmas"
    # unlisted and no listed neighbours: folder layout below the folder all listed files share (midis/)
    assert got["midis/Extra/new_piece.mid"].composer == "Extra"


def test_a_folder_of_corpora_is_read_corpus_by_corpus_with_their_work_keys_kept_apart(tmp_path):
    """`organize.source: ../shared/corpora`: asap/ and piano-midi-de/ each have a metadata.csv."""
    write_asap_like(tmp_path / "asap")
    pmd = tmp_path / "piano-midi-de"
    write_tree(pmd, ["midis/Grieg/grieg_lyric.mid"], first_seed=40)
    (pmd / "metadata.csv").write_text("composer,title,midi\nGrieg,Lyric_Piece,midis/Grieg/grieg_lyric.mid\n")
    write_midi(tmp_path / "Liszt" / "loose.mid", seed=77)  # outside both corpora: folder layout
    layout, files = collect_files(tmp_path, "auto")
    assert layout == "corpora (asap: csv, piano-midi-de: csv)"
    got = by_path(files)
    assert len(files) == 8
    assert {f.work_key for f in files if f.source_path.startswith("asap/Bach/")} == {"asap/Bach/Fugue/bwv_846"}
    assert got["piano-midi-de/midis/Grieg/grieg_lyric.mid"].composer == "Grieg"
    assert got["Liszt/loose.mid"].composer == "Liszt"
    assert all(f.path == tmp_path / f.source_path for f in files)


def test_auto_prefers_folder_for_composer_folders(tmp_path):
    write_tree(tmp_path, ["Bach/a-b.mid", "Bach/c.mid", "Liszt/d.mid"])
    assert detect_layout(tmp_path, list_midi_files(tmp_path)) == "folder"


def test_missing_empty_and_midi_less_sources_fail_with_one_clear_line(tmp_path):
    with pytest.raises(MozartError, match="does not exist"):
        collect_files(tmp_path / "nope", "auto")
    with pytest.raises(MozartError, match="no .mid/.midi files"):
        collect_files(tmp_path, "auto")
    (tmp_path / "notes.txt").write_text("not music")
    with pytest.raises(MozartError, match="no .mid/.midi files"):
        collect_files(tmp_path, "folder")
    write_midi(tmp_path / "a.mid")
    with pytest.raises(MozartError, match="metadata.csv"):
        collect_files(tmp_path, "csv")


def test_csv_without_usable_columns_names_them(tmp_path):
    write_midi(tmp_path / "a.mid")
    (tmp_path / "metadata.csv").write_text("author,file_name\nBach,a.mid\n")
    with pytest.raises(MozartError, match="composer column"):
        collect_files(tmp_path, "auto")


def test_prefix_layout_takes_the_longest_listed_composer_at_the_start(tmp_path):
    write_tree(tmp_path, ["saint-saens-danse_macabre.mid", "rimsky-korsakov-flight_of_the_bumblebee.mid",
                          "vaughan-williams-the_lark.mid", "villa-lobos-choros-no-5.mid", "c-p-e-bach-solfeggietto.mid",
                          "einaudi-nuvole_bianche.mid", "unknown_artist-waltz.mid"])
    layout, files = collect_files(tmp_path, "auto")
    got = {f.source_path: (f.composer, f.title, f.via_prefix) for f in files}
    assert layout == "prefix"
    assert got["saint-saens-danse_macabre.mid"] == ("saint-saens", "danse macabre", True)
    assert got["rimsky-korsakov-flight_of_the_bumblebee.mid"] == ("rimsky-korsakov", "flight of the bumblebee", True)
    assert got["vaughan-williams-the_lark.mid"][:2] == ("vaughan-williams", "the lark")
    assert got["villa-lobos-choros-no-5.mid"][:2] == ("villa-lobos", "choros-no-5")
    assert got["c-p-e-bach-solfeggietto.mid"][:2] == ("c-p-e-bach", "solfeggietto")
    assert got["einaudi-nuvole_bianche.mid"] == ("einaudi", "nuvole bianche", False)
    assert got["unknown_artist-waltz.mid"] == ("unknown_artist", "waltz", False)


def test_composer_space_dash_space_title_splits_at_the_spaced_dash(tmp_path):
    write_tree(tmp_path, ["Saint-Saëns - Danse macabre.mid", "Chopin - Nocturne - Op. 9.mid", "Debussy - Rêverie.mid"])
    layout, files = collect_files(tmp_path, "auto")
    got = {f.source_path: (f.composer, f.title) for f in files}
    assert layout == "prefix"
    assert got["Saint-Saëns - Danse macabre.mid"] == ("Saint-Saëns", "Danse macabre")
    assert got["Chopin - Nocturne - Op. 9.mid"] == ("Chopin", "Nocturne - Op. 9")
