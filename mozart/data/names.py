"""Composer names: one canonical display name per composer, however a corpus spells it; safe folder names.

Corpora spell composers every which way ("J.S. Bach", "Bach, Johann Sebastian", "bach", "Rachmaninov",
"Tschaikowsky", "Chopin, Frédéric", "Mozzart"). `normalize_composer` maps them onto the canonical list shipped in
`mozart/data/composers.csv` (`mozart.data.composer_catalogue` does the matching and says why): the display name is
the surname, in ASCII so folders and `mozart generate --composer` are easy to type, with initials or a first name
where composers share one ("C.P.E. Bach", "Clara Schumann", "R. Strauss"). A label the list does not know is kept
as the cleaned "Firstname Surname"; a placeholder (Unknown, Anonymous, Various, Traditional, ...) becomes `Unknown`.
`match_composer` lets a user name a composer in any spelling the normaliser maps; `closest_composers` suggests
names when nothing matches. `safe_dirname` turns any name into one harmless path component.
"""
from __future__ import annotations

import difflib
import re
import unicodedata

from mozart.data.composer_catalogue import UNKNOWN, default_catalogue, fold

__all__ = ["KNOWN_COMPOSERS", "UNKNOWN", "closest_composers", "fold", "match_composer", "normalize_composer",
           "safe_dirname"]

# Listed composers whose display name is also an everyday English word: a free-text request ("something still and
# calm for the beach") must not be read as naming William Grant Still or Amy Beach.
EVERYDAY_WORDS = {"Barber", "Beach", "Berlin", "Bird", "Blow", "Bridge", "Bull", "Cage", "Carpenter", "Croft", "Crumb",
                  "Door", "Field", "Foster", "German", "Gibbons", "Glass", "Hook", "Ireland", "Kern", "Lack", "Lamb",
                  "Low", "Marshall", "Martini", "Mason", "Monk", "Parry", "Porter", "Price", "Reich", "Rota", "Rust",
                  "Shore", "Still", "Turk", "Warlock", "Wolf"}
# Every composer the list knows by a distinctive name: lets a request name a composer that a given model lacks.
KNOWN_COMPOSERS = sorted({entry.name for entry in default_catalogue().entries} - EVERYDAY_WORDS)


def normalize_composer(raw: str) -> str:
    """Canonical display name for a composer spelled any way; 'Unknown' for an empty name or a placeholder."""
    return default_catalogue().resolve(raw).composer


def match_composer(query: str, known: list[str]) -> str | None:
    """The name in `known` that `query` means (any spelling the normaliser maps, any case/accents), or None."""
    if not str(query or "").strip():
        return None
    wanted = normalize_composer(query)
    if wanted in known:
        return wanted
    by_fold: dict[str, str] = {}
    for name in known:
        by_fold.setdefault(fold(name), name)
        by_fold.setdefault(fold(normalize_composer(name)), name)
    for key in (fold(wanted), fold(query)):
        if key in by_fold:
            return by_fold[key]
    # A bare surname names an unlisted composer if exactly one known name ends with it ("Lange" -> "Gustav Lange").
    last = fold(query).split()[-1:] or [""]
    hits = [name for name in known if fold(name).split()[-1:] == last]
    return hits[0] if len(hits) == 1 else None


def closest_composers(query: str, known: list[str], n: int = 3) -> list[str]:
    """Up to `n` names from `known` that look most like `query`, best first (for 'did you mean ...?')."""
    folded = {fold(name): name for name in sorted(known)}
    key = fold(normalize_composer(query)) or fold(query)
    near = difflib.get_close_matches(key, list(folded), n=n, cutoff=0.5)
    if len(near) < n and key:  # also suggest names containing the query ("bach" -> "C.P.E. Bach")
        near += [f for f in folded if key in f and f not in near][: n - len(near)]
    return [folded[f] for f in near]


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]+')


def safe_dirname(name: str, max_bytes: int = 100) -> str:
    """One harmless path component for `name`: no separators, NUL, control or Windows-reserved characters/names,
    no leading dots ('..' and hidden files) or dashes, at most `max_bytes` UTF-8 bytes, never empty."""
    text = unicodedata.normalize("NFC", str(name or ""))
    text = "".join(c if c.isprintable() or c == " " else "_" for c in text)
    text = _UNSAFE.sub("_", text)
    text = " ".join(text.split()).strip(" .")  # Windows drops trailing dots/spaces; leading dots hide or climb
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1].rstrip(" .")
    if not text.strip("_"):  # nothing left worth naming a folder after
        return UNKNOWN
    if text.split(".")[0].lower() in _WINDOWS_RESERVED or text.startswith("-"):
        text = "_" + text  # reserved device names; a leading dash reads as an option to `tool *.mid`
    return text
