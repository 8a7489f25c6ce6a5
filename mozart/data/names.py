"""Composer names: one canonical display name per composer, however a corpus spells it; safe folder names.

Corpora spell composers every which way ("J.S. Bach", "Bach, Johann Sebastian", "bach", "Rachmaninov",
"Tschaikowsky", "Chopin, Frédéric"). `normalize_composer` maps them all to one display name: the surname in title
case for composers in the alias table below (ASCII spelling, so folders and `mozart generate --composer` are easy to
type), else the cleaned "Firstname Surname". `match_composer` lets a user name a composer in any spelling the
normaliser maps; `closest_composers` suggests names when nothing matches. `safe_dirname` turns any name into one
harmless path component.
"""
from __future__ import annotations

import difflib
import re
import unicodedata

UNKNOWN = "Unknown"

# Spelling (folded: lowercase ASCII, words separated by one space) -> canonical display name. Surnames alone are
# enough for most composers; full names are listed where a surname is shared (the Bach sons, Clara Schumann).
_FULL_NAMES = {
    "carl philipp emanuel bach": "C.P.E. Bach", "c p e bach": "C.P.E. Bach", "cpe bach": "C.P.E. Bach",
    "cpebach": "C.P.E. Bach",
    "wilhelm friedemann bach": "W.F. Bach", "w f bach": "W.F. Bach",
    "johann christian bach": "J.C. Bach", "j c bach": "J.C. Bach",
    "clara schumann": "Clara Schumann", "clara wieck": "Clara Schumann", "clara wieck schumann": "Clara Schumann",
    "fanny mendelssohn": "Fanny Mendelssohn", "fanny hensel": "Fanny Mendelssohn",
    "franz xaver mozart": "F.X. Mozart", "leopold mozart": "Leopold Mozart",
    "johann strauss ii": "Strauss", "richard strauss": "R. Strauss",
    "domenico scarlatti": "Scarlatti", "alessandro scarlatti": "A. Scarlatti",
    "rimsky korsakov": "Rimsky-Korsakov", "saint saens": "Saint-Saens", "villa lobos": "Villa-Lobos",
    "josquin des prez": "Josquin", "josquin des pres": "Josquin",
    "mendelssohn bartholdy": "Mendelssohn",
}
_SURNAMES = {
    "Albeniz": ["albeniz"], "Alkan": ["alkan"], "Arensky": ["arensky"], "Bach": ["bach"],
    "Balakirev": ["balakirev", "balakirew"], "Bartok": ["bartok"], "Beethoven": ["beethoven"],
    "Berg": ["berg"], "Bizet": ["bizet"], "Borodin": ["borodin"], "Brahms": ["brahms"], "Bruckner": ["bruckner"],
    "Burgmuller": ["burgmuller", "burgmueller"], "Busoni": ["busoni"], "Buxtehude": ["buxtehude"],
    "Byrd": ["byrd"], "Chaminade": ["chaminade"], "Chopin": ["chopin"], "Clementi": ["clementi"],
    "Corelli": ["corelli"], "Couperin": ["couperin"], "Czerny": ["czerny"], "Debussy": ["debussy"],
    "Diabelli": ["diabelli"], "Dvorak": ["dvorak"], "Elgar": ["elgar"], "Faure": ["faure"], "Field": ["field"],
    "Franck": ["franck"], "Frescobaldi": ["frescobaldi"], "Gershwin": ["gershwin"], "Glazunov": ["glazunov"],
    "Glinka": ["glinka"], "Godowsky": ["godowsky"], "Gottschalk": ["gottschalk"], "Granados": ["granados"],
    "Grieg": ["grieg"], "Handel": ["handel", "haendel", "hendel"], "Haydn": ["haydn"], "Heller": ["heller"],
    "Hummel": ["hummel"], "Janacek": ["janacek"], "Joplin": ["joplin"], "Josquin": ["josquin"],
    "Kuhlau": ["kuhlau"], "Liszt": ["liszt"], "Lyadov": ["lyadov", "liadov"], "Mahler": ["mahler"],
    "Medtner": ["medtner"], "Mendelssohn": ["mendelssohn"], "Monteverdi": ["monteverdi"],
    "Moszkowski": ["moszkowski"], "Mozart": ["mozart"],
    "Mussorgsky": ["mussorgsky", "moussorgsky", "musorgsky", "mussorgskij", "moussorgski", "mussorgski"],
    "Pachelbel": ["pachelbel"], "Paganini": ["paganini"], "Palestrina": ["palestrina"],
    "Poulenc": ["poulenc"], "Prokofiev": ["prokofiev", "prokofieff", "prokofjew", "prokofyev", "prokofiew"],
    "Purcell": ["purcell"], "Rachmaninoff": ["rachmaninoff", "rachmaninov", "rachmaninow", "rakhmaninov"],
    "Rameau": ["rameau"], "Ravel": ["ravel"], "Reger": ["reger"], "Rossini": ["rossini"],
    "Rubinstein": ["rubinstein"], "Satie": ["satie"], "Scarlatti": ["scarlatti"], "Schoenberg": ["schoenberg"],
    "Schubert": ["schubert"], "Schumann": ["schumann"],
    "Scriabin": ["scriabin", "skryabin", "scriabine", "skrjabin", "skriabin"], "Shostakovich": ["shostakovich"],
    "Sibelius": ["sibelius"], "Sinding": ["sinding"], "Smetana": ["smetana"], "Stravinsky": ["stravinsky"],
    "Sweelinck": ["sweelinck"], "Szymanowski": ["szymanowski"],
    "Tchaikovsky": ["tchaikovsky", "tschaikowsky", "tchaikowsky", "tschaikovsky", "chaikovsky", "cajkovskij",
                    "tschaikowski", "tchaikovski"],
    "Telemann": ["telemann"], "Verdi": ["verdi"], "Vivaldi": ["vivaldi"], "Wagner": ["wagner"],
    "Weber": ["weber"], "Webern": ["webern"],
}
# Corpus labels that are not composers (piano-midi.de files carol fantasias by several composers under "Christmas").
_LABELS = {"christmas": "Traditional", "traditional": "Traditional", "trad": "Traditional",
           "anonymous": "Anonymous", "anon": "Anonymous", "unknown": UNKNOWN}
_ALIASES = {**_FULL_NAMES, **_LABELS, **{s: name for name, spellings in _SURNAMES.items() for s in spellings}}
# Every composer the alias table knows by name: lets a request name a composer that a given model lacks.
KNOWN_COMPOSERS = sorted({*_FULL_NAMES.values(), *_SURNAMES})


def fold(text: str) -> str:
    """Lowercase ASCII words separated by single spaces: 'Dvořák, Antonín' -> 'dvorak antonin'."""
    text = unicodedata.normalize("NFKD", text).replace("ß", "ss")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _title_word(word: str) -> str:
    """Capitalise words written all lower or all upper; keep deliberate casing like 'McDowell' or 'van'."""
    return word.capitalize() if word.islower() or word.isupper() else word


def normalize_composer(raw: str) -> str:
    """Canonical display name for a composer spelled any way; 'Unknown' for an empty name."""
    text = unicodedata.normalize("NFC", str(raw or ""))
    text = "".join(c if c.isprintable() else " " for c in text).replace("_", " ")
    if text.count(",") == 1:  # "Surname, Firstname" -> "Firstname Surname"
        surname, first = (part.strip() for part in text.split(","))
        text = f"{first} {surname}"
    text = " ".join(text.replace(",", " ").split()).strip(" .-")
    key = fold(text)
    if not key:
        return UNKNOWN
    if key in _ALIASES:
        return _ALIASES[key]
    words = key.split()
    for i in range(len(words) - 1):  # a known full name at the end: "Johann Strauss II", "Felix Mendelssohn Bartholdy"
        if " ".join(words[i:]) in _FULL_NAMES:
            return _FULL_NAMES[" ".join(words[i:])]
    for word in reversed(words):  # the surname usually comes last, but "Bach Johann Sebastian" happens too
        if word in _ALIASES and word not in _LABELS:
            return _ALIASES[word]
    return " ".join(_title_word(w) for w in text.split())


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
