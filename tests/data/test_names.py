"""Composer name normalisation, matching and safe folder names (mozart.data.names)."""
from __future__ import annotations

import os

import pytest

from mozart.data.names import (EVERYDAY_WORDS, KNOWN_COMPOSERS, closest_composers, match_composer, normalize_composer,
                               safe_dirname)
from mozart.generation.request import parse_request


@pytest.mark.parametrize("raw, canonical", [
    ("J.S. Bach", "Bach"), ("Bach, Johann Sebastian", "Bach"), ("bach", "Bach"), ("JS Bach", "Bach"),
    ("Johann Sebastian Bach", "Bach"), ("Rachmaninov", "Rachmaninoff"), ("Rachmaninoff, Sergei", "Rachmaninoff"),
    ("Tschaikowsky", "Tchaikovsky"), ("Pyotr Ilyich Tchaikovsky", "Tchaikovsky"), ("Chopin, Frédéric", "Chopin"),
    ("Mozart, Wolfgang Amadeus", "Mozart"), ("SCHUBERT", "Schubert"), ("Liszt, Franz", "Liszt"),
    ("Claude Debussy", "Debussy"), ("Skryabin", "Scriabin"), ("Scriabin, Alexander", "Scriabin"),
    ("Moussorgsky", "Mussorgsky"), ("Prokofieff", "Prokofiev"), ("Händel", "Handel"), ("Handel", "Handel"),
    ("Haendel, Georg Friedrich", "Handel"), ("Dvořák, Antonín", "Dvorak"), ("Burgmueller", "Burgmuller"),
    ("Felix Mendelssohn Bartholdy", "Mendelssohn"), ("Carl Philipp Emanuel Bach", "C.P.E. Bach"),
    ("Schumann, Clara", "Clara Schumann"), ("Schumann, Robert", "Schumann"), ("Heinrich Lichner", "Lichner"),
    ("Ludovico_Einaudi", "Einaudi"), ("Édouard Lalo", "Lalo"), ("Mozzart", "Mozart"), ("Johann Strauss II", "J. Strauss II"),
])
def test_aliases_map_to_one_canonical_name(raw, canonical):
    assert normalize_composer(raw) == canonical


@pytest.mark.parametrize("raw, cleaned", [
    ("Leonard, Robert", "Robert Leonard"), ("GUSTAV HOLZMANN", "Gustav Holzmann"),
    ("  heinrich   wohlgemuth ", "Heinrich Wohlgemuth"), ("Ludovico_Ferraris", "Ludovico Ferraris"),
    ("Édouard Mignan", "Édouard Mignan"), ("Strauss", "Strauss"),
])
def test_composers_not_on_the_list_become_clean_firstname_surname(raw, cleaned):
    assert normalize_composer(raw) == cleaned


@pytest.mark.parametrize("raw", ["", "   ", "Christmas", "Anonymous", "unknown_artist", "Trad."])
def test_empty_and_placeholder_labels_become_unknown(raw):
    assert normalize_composer(raw) == "Unknown"


def test_normalisation_is_idempotent():
    for raw in ["J.S. Bach", "Leonard, Robert", "Schumann, Clara", "Dvořák", "C.P.E. Bach", "x", "Mozzart", "Strauss",
                "Christmas", "Heinrich Lichner"]:
        once = normalize_composer(raw)
        assert normalize_composer(once) == once


def test_match_composer_accepts_any_spelling_the_normaliser_maps():
    known = ["Bach", "Chopin", "Rachmaninoff", "Clara Schumann", "Gustav Lange", "Robert Leonard"]
    assert match_composer("j.s. bach", known) == "Bach"
    assert match_composer("Rachmaninov", known) == "Rachmaninoff"
    assert match_composer("CHOPIN, Frédéric", known) == "Chopin"
    assert match_composer("clara schumann", known) == "Clara Schumann"
    assert match_composer("lange", known) == "Gustav Lange"  # a model trained before Lange was on the list
    assert match_composer("leonard", known) == "Robert Leonard"  # a bare surname of a composer not on the list
    assert match_composer("Mozart", known) is None
    assert match_composer("", known) is None


def test_everyday_words_in_a_request_are_not_taken_for_composers_the_model_lacks():
    assert EVERYDAY_WORDS <= {normalize_composer(w) for w in EVERYDAY_WORDS}  # all listed: organize still knows them
    assert not EVERYDAY_WORDS & set(KNOWN_COMPOSERS) and len(KNOWN_COMPOSERS) > 700
    req = parse_request("two minutes, still and calm, for a glass of wine on the beach in Berlin", ["Bach"])
    assert (req.composer, req.missing_composer) == (None, None)
    assert parse_request("one minute like Rimsky-Korsakov", ["Bach"]).missing_composer == "Rimsky-Korsakov"
    assert parse_request("one minute like Debusy", ["Debussy"]).composer == "Debussy"  # misspelt, still understood


def test_closest_composers_suggests_near_names():
    known = ["Bach", "Beethoven", "Chopin", "Brahms", "C.P.E. Bach"]
    assert closest_composers("Beethovn", known)[0] == "Beethoven"
    assert "Bach" in closest_composers("Bahc", known)
    assert len(closest_composers("Beethovn", known, n=2)) <= 2
    assert closest_composers("zzzzzz", known) == []


HOSTILE = ["../..", "..", ".", "/", "/etc/passwd", "a/../../b", "..\\..\\windows", "nul\x00byte", "x" * 5000,
           "é" * 300, "", "   ", "CON", "con.txt", "LPT1", "aux", ".hidden", "tab\tnew\nline", "a:b*c?d|e<f>g\"h",
           "\u202eevil", "中文作曲家", "💀" * 100, "...", "  ../ "]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_dirname_never_escapes_its_parent(tmp_path, name):
    safe = safe_dirname(name)
    assert safe and safe not in {".", ".."} and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= 100
    assert safe.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "lpt1", "com1"}
    target = tmp_path / "organized" / safe
    target.mkdir(parents=True, exist_ok=True)  # really creatable on this filesystem
    (target / "piece.mid").write_bytes(b"x")
    assert target.resolve().parent == (tmp_path / "organized").resolve()
    assert os.listdir(tmp_path) == ["organized"]


def test_safe_dirname_keeps_ordinary_names():
    assert safe_dirname("Bach") == "Bach"
    assert safe_dirname("Clara Schumann") == "Clara Schumann"
    assert safe_dirname("C.P.E. Bach") == "C.P.E. Bach"
    assert safe_dirname("Dvořák") == "Dvořák"
