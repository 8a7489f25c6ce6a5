"""Read a short English request such as "two minutes like Chopin at 90 bpm" into generation settings.

Rule-based on purpose (no language model): regular expressions for lengths ("16 bars", "two minutes", "90 seconds",
"a minute and a half", "1.5 min") and tempi ("90 bpm", "tempo 90", "slow", "allegro"), and the composer as the
longest run of words that `mozart.data.names.match_composer` maps to a composer the model knows. `describe` echoes what
was understood so the user can see how the request was read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "couple": 2, "few": 3, "half": 0.5,
}
# Tempo words -> bpm (the usual metronome ranges of the Italian terms, plus plain English).
TEMPO_WORDS = {
    "very slow": 50, "very slowly": 50, "grave": 40, "largo": 50, "lento": 55, "adagio": 70, "slow": 70,
    "slowly": 70, "andante": 90, "moderato": 110, "moderate": 110, "medium": 110, "allegretto": 115,
    "allegro": 140, "fast": 140, "quick": 140, "quickly": 140, "lively": 150, "vivace": 160,
    "very fast": 170, "presto": 180, "prestissimo": 200,
}
_NUMBER = r"(\d+(?:\.\d+)?|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")"
# "twenty five", "twenty-five", "a couple of", "half a"
_QUANTITY = rf"{_NUMBER}(?:[\s-]+{_NUMBER})?(?:\s+of)?"
_UNITS = {"bar": "bars", "bars": "bars", "measure": "bars", "measures": "bars",
          "second": "seconds", "seconds": "seconds", "sec": "seconds", "secs": "seconds",
          "minute": "minutes", "minutes": "minutes", "min": "minutes", "mins": "minutes"}
_LENGTH_RE = re.compile(rf"\b{_QUANTITY}[\s-]*(bars?|measures?|seconds?|secs?|minutes?|mins?)\b"
                        r"(\s+and\s+a\s+half)?")
_HALF_A_RE = re.compile(r"\bhalf\s+an?\s+(minute|bar|measure)\b")
_BPM_RE = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:bpm|beats\s+per\s+minute)\b|\btempo\s+(?:of\s+)?(\d+(?:\.\d+)?)\b")
_STOPWORDS = {"a", "an", "the", "in", "of", "like", "by", "style", "at", "and", "with", "piece", "for", "some",
              "something", "write", "me", "please", "play", "compose", "generate", "make", "music", "song", "bpm",
              "tempo", "long", "about", "around", "minutes", "minute", "seconds", "bars", "measures", "bar"}


@dataclass(frozen=True)
class Request:
    composer: str | None = None   # a name from `known`, or None (unconditional / not mentioned)
    missing_composer: str | None = None  # a composer the request names that is not in `known`
    bars: int | None = None
    seconds: float | None = None
    bpm: float | None = None

    def describe(self) -> str:
        parts = [f"composer {self.composer}" if self.composer else "no composer (unconditional)"]
        if self.bars is not None:
            parts.append(f"{self.bars} bars")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} seconds")
        parts.append(f"{self.bpm:g} bpm" if self.bpm is not None else "default tempo")
        return "understood: " + ", ".join(parts)


def _number(first: str, second: str | None) -> float:
    def value(word: str) -> float:
        return float(word) if word[0].isdigit() else float(NUMBER_WORDS[word])
    a = value(first)
    if second is None:
        return a
    b = value(second)
    return a + b if a >= 20 and b < 10 else a * b  # "twenty five" = 25, "a couple" = 2, "half a" = 0.5


def parse_length(text: str) -> tuple[int | None, float | None]:
    """(bars, seconds) from the first length phrase in `text` (lowercase), at most one of them set."""
    half = _HALF_A_RE.search(text)
    match = _LENGTH_RE.search(text)
    if match is None and half is None:
        return None, None
    if match is None or (half is not None and half.start() < match.start()):
        unit = _UNITS[half.group(1)]
        return (None, 30.0) if unit == "minutes" else (1, None)
    amount = _number(match.group(1), match.group(2))
    if match.group(4):  # "... and a half"
        amount += 0.5
    unit = _UNITS[match.group(3)]
    if unit == "bars":
        return max(1, round(amount)), None
    return None, amount * 60.0 if unit == "minutes" else amount


def parse_bpm(text: str) -> float | None:
    match = _BPM_RE.search(text)
    if match:
        return float(match.group(1) or match.group(2))
    for phrase in sorted(TEMPO_WORDS, key=len, reverse=True):  # "very slow" before "slow"
        if re.search(rf"\b{phrase}\b", text):
            return float(TEMPO_WORDS[phrase])
    return None


def parse_composer(text: str, known: Sequence[str], match: Callable[[str, Sequence[str]], str | None]) -> str | None:
    """The longest run of (non-stopword, non-number) words that `match` maps to a known composer."""
    words = re.findall(r"[^\W\d_][\w'.-]*", text)
    words = [w.strip(".'-") for w in words]
    n = len(words)
    for length in range(min(4, n), 0, -1):
        for start in range(n - length + 1):
            span = words[start:start + length]
            if span[0].lower() in _STOPWORDS or span[-1].lower() in _STOPWORDS:
                continue
            if any(w.lower() in NUMBER_WORDS or w.lower() in TEMPO_WORDS or w.lower() in _UNITS for w in span):
                continue
            found = match(" ".join(span), known)
            if found is not None:
                return found
    return None


def parse_request(text: str, known: Sequence[str],
                  match: Callable[[str, Sequence[str]], str | None] | None = None) -> Request:
    """Composer (from `known`), length and tempo of an English request; parts not mentioned stay None."""
    if match is None:
        from mozart.data.names import match_composer as match
    lower = " ".join(text.lower().split())
    bars, seconds = parse_length(lower)
    # the composer is searched in the original casing, with the length/tempo phrases removed
    stripped = _BPM_RE.sub(" ", _LENGTH_RE.sub(" ", text.lower()))
    composer = parse_composer(stripped, known, match)
    missing = None
    if composer is None:  # a famous name the model was not trained on must not silently become "unconditional"
        from mozart.data.names import KNOWN_COMPOSERS
        missing = parse_composer(stripped, KNOWN_COMPOSERS, match)
    return Request(composer=composer, missing_composer=missing, bars=bars, seconds=seconds, bpm=parse_bpm(lower))
