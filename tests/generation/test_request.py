"""The rule-based English request parser: composer, length (bars/seconds/minutes, number words) and tempo."""
from __future__ import annotations

import pytest

from mozart.generation.request import parse_request

KNOWN = ["Johann Sebastian Bach", "Frédéric Chopin", "Wolfgang Amadeus Mozart", "Ludwig van Beethoven",
         "Domenico Scarlatti", "OTHER"]


@pytest.mark.parametrize("text, composer, bars, seconds, bpm", [
    ("two minutes like Chopin at 90 bpm", "Frédéric Chopin", None, 120.0, 90.0),
    ("16 bars of Bach, fast", "Johann Sebastian Bach", 16, None, 140.0),
    ("something slow in the style of mozart, 45 seconds", "Wolfgang Amadeus Mozart", None, 45.0, 70.0),
    ("a minute and a half of Beethoven", "Ludwig van Beethoven", None, 90.0, None),
    ("twenty-five bars like Scarlatti at tempo 100", "Domenico Scarlatti", 25, None, 100.0),
    ("half a minute of very slow J.S. Bach", "Johann Sebastian Bach", None, 30.0, 50.0),
    ("1.5 min chopin presto", "Frédéric Chopin", None, 90.0, 180.0),
    ("play 8 measures allegro", None, 8, None, 140.0),
    ("a piece by Dvorak", None, None, None, None),  # not a composer the model knows
    ("three minutes of Frederic Chopin at 72 beats per minute", "Frédéric Chopin", None, 180.0, 72.0),
])
def test_parse_request(text, composer, bars, seconds, bpm):
    req = parse_request(text, KNOWN)
    assert (req.composer, req.bars, req.seconds, req.bpm) == (composer, bars, seconds, bpm)


def test_describe_echoes_what_was_understood():
    text = parse_request("two minutes like Chopin at 90 bpm", KNOWN).describe()
    assert text == "understood: composer Frédéric Chopin, 120 seconds, 90 bpm"
    assert "unconditional" in parse_request("8 bars", KNOWN).describe()


def test_numbers_and_tempo_words_are_not_taken_for_composers():
    seen = []

    def spy(query, known):
        seen.append(query)
        return None
    parse_request("two minutes, slow, at 90 bpm like nobody", KNOWN, match=spy)
    assert all(word not in q.lower().split() for q in seen for word in ("two", "minutes", "slow", "90", "bpm"))


def test_a_composer_the_model_lacks_is_reported_not_dropped():
    req = parse_request("two minutes like Chopin at 90 bpm", ["Bach", "Mozart"])
    assert req.composer is None and req.missing_composer == "Chopin"
    assert parse_request("two minutes of anything at 90 bpm", ["Bach"]).missing_composer is None
    assert parse_request("like bach", ["Bach", "Mozart"]).missing_composer is None
