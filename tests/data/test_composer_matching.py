"""Matching composer labels to the list (mozart.data.composer_catalogue): exact, alias, fuzzy, placeholders, user
aliases, and the labelled true/false pairs that chose the fuzzy threshold."""
from __future__ import annotations

import pytest

from mozart.data.composer_catalogue import (FUZZY_MARGIN, FUZZY_THRESHOLD, UNKNOWN, Catalogue, Entry,
                                            _transposition_score, default_catalogue, fold)

CATALOGUE = default_catalogue()

# Misspellings (a doubled, dropped, swapped or wrong letter; a first name beside the surname) that must merge.
# None of them is a listed spelling, so each one exercises the fuzzy match.
FUZZY_TRUE = [
    ("Mozzart", "Mozart"), ("Debusy", "Debussy"), ("Shostakovitch", "Shostakovich"), ("Beethovn", "Beethoven"),
    ("Bethoven", "Beethoven"), ("Beethvoen", "Beethoven"), ("Chopinn", "Chopin"), ("Mendelsohn", "Mendelssohn"),
    ("Tchaikovksy", "Tchaikovsky"), ("Prokoffiev", "Prokofiev"), ("Hadyn", "Haydn"), ("Greig", "Grieg"),
    ("Scarlati", "Scarlatti"), ("Rachmaninnoff", "Rachmaninoff"), ("Stravinski", "Stravinsky"),
    ("Schubertt", "Schubert"), ("Mozkowski", "Moszkowski"), ("Claude Debusy", "Debussy"),
    ("Robert Shumann", "Schumann"), ("Clara Shumann", "Clara Schumann"), ("Frederic Chopinn", "Chopin"),
    ("Felix Mendelson", "Mendelssohn"), ("Modest Musorgski", "Mussorgsky"), ("Granadoss", "Granados"),
    ("Albenitz", "Albeniz"), ("Czerney", "Czerny"), ("Clementti", "Clementi"), ("Paderewsky", "Paderewski"),
    ("Brahmns", "Brahms"), ("Ravell", "Ravel"), ("Lizst", "Liszt"), ("Rimsky-Korsakow", "Rimsky-Korsakov"),
    ("Satei", "Satie"), ("Gershwinn", "Gershwin"), ("Dvorack", "Dvorak"),
]
# Real or plausible names NOT on the list that sit one letter away from a listed composer: they must stay apart.
FUZZY_FALSE = [
    ("Himmel", "Hummel"), ("Keller", "Heller"), ("Godart", "Godard"), ("Franke", "Franck"), ("Hertz", "Herz"),
    ("Heinz", "Heins"), ("Kramer", "Cramer"), ("Lang", "Lange"), ("Berge", "Berg"), ("Bachmann", "Bach"),
    ("Haydn Wood", "Haydn"), ("Ignaz Lachner", "Lachner"), ("William Schuman", "Schumann"),
    ("Nannerl Mozart", "Mozart"),
]
# Listed composers with near names: each label resolves to its own composer, never to the other.
LISTED_APART = [
    ("Schumann, Clara", "Clara Schumann", "Schumann"), ("Schumann, Robert", "Schumann", "Clara Schumann"),
    ("Bach", "Bach", "C.P.E. Bach"), ("Carl Philipp Emanuel Bach", "C.P.E. Bach", "Bach"),
    ("Leopold Mozart", "Leopold Mozart", "Mozart"), ("Michael Haydn", "M. Haydn", "Haydn"),
    ("Carl Stamitz", "C. Stamitz", "J. Stamitz"), ("Nadia Boulanger", "N. Boulanger", "L. Boulanger"),
    ("Josef Strauss", "Josef Strauss", "J. Strauss II"), ("Richard Strauss", "R. Strauss", "J. Strauss II"),
    ("Oscar Straus", "Straus", "R. Strauss"), ("Kuhnau", "Kuhnau", "Kuhlau"), ("Webern", "Webern", "Weber"),
    ("Hiller", "Hiller", "Heller"), ("Bache", "Bache", "Bach"), ("Ludwig Berger", "Berger", "Berg"),
    ("Arthur Bird", "Bird", "Byrd"), ("Alessandro Scarlatti", "A. Scarlatti", "Scarlatti"),
]


def _score_against(label: str, composer: str) -> float:
    """The fuzzy score of `label` against the closest listed spelling of `composer`."""
    index = next(i for i, e in enumerate(CATALOGUE.entries) if e.name == composer)
    return max(_transposition_score(fold(label), s) for s, owner in CATALOGUE.spelling.items() if owner == index)


def test_the_fuzzy_threshold_separates_the_labelled_pairs():
    true_scores = {label: _score_against(label, c) for label, c in FUZZY_TRUE}
    false_scores = {label: _score_against(label, c) for label, c in FUZZY_FALSE}
    print("\ntrue pairs, lowest first:", sorted(true_scores.items(), key=lambda kv: kv[1])[:6])
    print("false pairs, highest first:", sorted(false_scores.items(), key=lambda kv: -kv[1])[:6])
    assert max(false_scores.values()) < FUZZY_THRESHOLD <= min(true_scores.values())
    assert all(fold(label) not in CATALOGUE.spelling for label, _ in FUZZY_TRUE + FUZZY_FALSE)


@pytest.mark.parametrize("label, composer", FUZZY_TRUE)
def test_misspellings_merge_by_fuzzy_match(label, composer):
    found = CATALOGUE.resolve(label)
    assert found.composer == composer
    assert found.how.startswith("fuzzy score ") and int(found.how.split()[-1]) >= FUZZY_THRESHOLD


@pytest.mark.parametrize("label, near", FUZZY_FALSE)
def test_near_names_not_on_the_list_are_kept_as_written(label, near):
    found = CATALOGUE.resolve(label)
    assert found.composer != near and found.how == "unmatched"
    assert found.composer == " ".join(w.capitalize() for w in label.split())


@pytest.mark.parametrize("label, composer, other", LISTED_APART)
def test_listed_composers_with_near_names_stay_apart(label, composer, other):
    assert CATALOGUE.resolve(label).composer == composer != other


@pytest.mark.parametrize("label, composer", [
    ("J S Bach", "Bach"), ("J.S. Bach", "Bach"), ("JS Bach", "Bach"), ("Bach, Johann Sebastian", "Bach"),
    ("Bach J.S.", "Bach"), ("Johann Sebastian Bach", "Bach"), ("Tschaikowsky", "Tchaikovsky"),
    ("Peter Tschaikowsky", "Tchaikovsky"), ("Karl Czerny", "Czerny"), ("Josef Lanner", "Lanner"),
    ("Rachmaninow", "Rachmaninoff"), ("Chopin, Frédéric", "Chopin"), ("DVOŘÁK", "Dvorak"), ("Listz", "Liszt"),
    ("saint-saens", "Saint-Saens"), ("Felix Mendelssohn Bartholdy", "Mendelssohn"), ("Johann Strauss II", "J. Strauss II"),
])
def test_listed_spellings_initials_and_first_names_match_without_guessing(label, composer):
    found = CATALOGUE.resolve(label)
    assert (found.composer, found.how in ("exact", "alias")) == (composer, True)


@pytest.mark.parametrize("label", ["Strauss", "Johann Strauss", "Johann Bach", "Boulanger", "Stamitz"])
def test_a_surname_several_composers_share_is_ambiguous_not_one_of_them(label):
    found = CATALOGUE.resolve(label)
    assert found.how == "ambiguous" and found.composer == label
    assert "could be" in found.note or "several composers" in found.note
    assert found.composer not in {e.name for e in CATALOGUE.entries}


def test_a_label_as_near_to_two_composers_is_not_guessed():
    assert CATALOGUE.resolve("Szymanowsky").how == "unmatched"  # Szymanowski and Szymanowska score the same
    tiny = Catalogue([Entry("Abcdefgh", "Abcdefgh, A", [], "1800", "1850"),
                      Entry("Abcdefgk", "Abcdefgk, B", [], "1800", "1850")])
    assert tiny.resolve("Abcdefgx").how == "unmatched"
    assert tiny.resolve("Abcdefghh").composer == "Abcdefgh" and FUZZY_MARGIN > 0


@pytest.mark.parametrize("label", [
    "Unknown", "unknown_artist", "UNKNOWN ARTIST", "Unknown Artist 2", "Anonymous", "Anon.", "anon", "Various",
    "Various Artists", "various_artists", "Traditional", "Trad.", "trad", "Misc", "?", "??", "", "   ", "N/A",
    "Unbekannt", "Inconnu", "Anónimo", "Christmas", "Christmas Carols", "Xmas", "Volkslied", "Folk song",
])
def test_placeholders_are_not_composers(label):
    found = CATALOGUE.resolve(label)
    assert (found.composer, found.how, found.is_placeholder) == (UNKNOWN, "placeholder", True)


def test_a_label_in_another_script_is_kept_not_taken_for_a_placeholder():
    found = CATALOGUE.resolve("Чайковский")
    assert (found.composer, found.how) == ("Чайковский", "unmatched")
    assert Catalogue(CATALOGUE.entries, {"Чайковский": "Tchaikovsky"}).resolve("Чайковский").composer == "Tchaikovsky"


def test_christmas_is_recorded_as_a_collection():
    assert CATALOGUE.resolve("Christmas").note == "a collection, not a composer"


def test_user_aliases_win_over_the_list_and_may_name_anyone():
    entries = CATALOGUE.entries
    mine = Catalogue(entries, {"Bach": "C.P.E. Bach", "Strauss": "Johann Strauss II", "anon": "Gustav Holzmann",
                               "Mystery Man": "unknown", "grieg ": "Edvard Grieg"})
    assert mine.resolve("bach").composer == "C.P.E. Bach" and mine.resolve("bach").how == "user alias"
    assert mine.resolve("STRAUSS").composer == "J. Strauss II"
    assert mine.resolve("Anon").composer == "Gustav Holzmann"  # a user alias may even name a placeholder label
    assert mine.resolve("Mystery Man").composer == UNKNOWN
    assert mine.resolve("Grieg").composer == "Grieg" and mine.resolve("Chopin").how == "exact"
    assert CATALOGUE.resolve("bach").composer == "Bach"  # the shared list is untouched


def test_resolution_is_cached_per_distinct_label():
    first = CATALOGUE.resolve("Mozzart")
    assert CATALOGUE.resolve("Mozzart") is first


def test_knows_is_exact_only_for_the_prefix_layout():
    assert CATALOGUE.knows("saint-saens") and CATALOGUE.knows("rimsky-korsakov") and CATALOGUE.knows("unknown")
    assert not CATALOGUE.knows("Mozzart") and not CATALOGUE.knows("saint") and not CATALOGUE.knows("strauss")
