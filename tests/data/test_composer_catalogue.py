"""The shipped composer list (mozart/data/composers.csv): big enough, every entry unique, shipped with the package."""
from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

from mozart.data.composer_catalogue import CATALOGUE_CSV, CSV_COLUMNS, default_catalogue, fold

REPO = Path(__file__).resolve().parents[2]
ROWS = list(csv.DictReader(CATALOGUE_CSV.open(encoding="utf-8")))

# The composers with the most pieces in GiantMIDI-Piano and other public piano collections, by their display name.
YARDSTICK = ["Scarlatti", "Bach", "Liszt", "Chopin", "Czerny", "Handel", "Beethoven", "Mozart", "Schubert", "Haydn",
             "Mendelssohn", "Clementi", "Schumann", "Brahms", "Debussy", "Grieg", "Satie", "Tchaikovsky", "Scriabin",
             "Rachmaninoff", "Couperin", "Rameau", "Heller", "Burgmuller", "Kuhlau", "Mompou", "Godowsky", "Alkan",
             "Moszkowski", "Chaminade", "Field", "Joplin", "Gottschalk", "Albeniz", "Granados", "Faure", "Ravel",
             "Poulenc", "Prokofiev", "Shostakovich", "Busoni", "Reger", "Medtner", "Lyapunov", "Lyadov", "Arensky",
             "Glazunov", "Balakirev", "Hummel", "Dussek", "Cramer", "Moscheles", "Kalkbrenner", "Thalberg",
             "Henselt", "Gurlitt", "Lichner", "Spindler", "Lange", "C.P.E. Bach", "Clara Schumann", "Saint-Saens",
             "Rimsky-Korsakov", "Vaughan Williams", "Villa-Lobos", "Mussorgsky", "Dvorak", "Janacek", "Bartok"]


def test_the_list_has_the_columns_and_at_least_500_composers():
    assert list(ROWS[0]) == CSV_COLUMNS
    assert len(ROWS) >= 500


@pytest.mark.parametrize("column", ["name", "sort_name"])
def test_every_display_and_sort_name_is_unique(column):
    folded = [fold(r[column]) for r in ROWS]
    assert all(folded), f"an empty {column}"
    assert len(set(folded)) == len(folded), sorted({f for f in folded if folded.count(f) > 1})


def test_no_spelling_names_two_composers():
    owner: dict[str, str] = {}
    clashes = []
    for row in ROWS:
        spellings = {fold(row["name"]), fold(row["sort_name"]), *(fold(a) for a in row["aliases"].split("|") if a)}
        for spelling in spellings:
            if owner.setdefault(spelling, row["name"]) != row["name"]:
                clashes.append((spelling, owner[spelling], row["name"]))
    assert clashes == []
    assert default_catalogue().conflicts == []


def test_life_years_are_plausible():
    for row in ROWS:
        born, died = int(row["born"]), int(row["died"]) if row["died"] else None
        assert 1400 <= born <= 2000, row
        assert died is None or born + 15 <= died <= 2026, row


def test_the_yardstick_composers_are_listed_under_their_display_names():
    names = {r["name"] for r in ROWS}
    assert [n for n in YARDSTICK if n not in names] == []
    catalogue = default_catalogue()
    assert {n: catalogue.resolve(n).how for n in YARDSTICK} == {n: "exact" for n in YARDSTICK}


def test_pyproject_ships_the_list_and_requires_rapidfuzz():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "composers.csv" in project["tool"]["setuptools"]["package-data"]["mozart.data"]
    assert any(d.startswith("rapidfuzz") for d in project["project"]["dependencies"])
