"""The canonical composer list (`composers.csv`, shipped data) and the matcher that maps a corpus label onto it.

`Catalogue.resolve(label)` answers what a composer label means and why, in this order:
1. `user alias`: the user's own table (`organize.aliases`) wins over everything;
2. `placeholder`: Unknown, Anonymous, Various Artists, Traditional, Christmas, "?", ... (see `PLACEHOLDERS`): no
   composer at all, so prepare trains those pieces as the unconditional id only;
3. `exact` (the display or full name) or `alias` (a listed spelling, initials, "Surname Firstname" with first names
   or initials that fit only one composer of that surname: "Bach J.S.", "Peter Tschaikowsky");
4. `ambiguous`: a bare surname shared by several listed composers and claimed by none ("Strauss"): kept as written;
5. `fuzzy score NN`: the closest listed spelling when it scores at least `FUZZY_THRESHOLD` and no other composer
   comes within `FUZZY_MARGIN` of it ("Mozzart", "Debusy", "Shostakovitch");
6. `unmatched`: kept as written (cleaned), never forced onto the nearest name.

The fuzzy score is rapidfuzz's Indel ratio with an adjacent transposition counted as one edit ("Listz"), on folded
names of at least `FUZZY_MIN_LENGTH` letters. The threshold and margin were chosen on the labelled true and false
pairs in tests/data/test_composer_matching.py (the test prints the table it chose them from).
"""
from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CATALOGUE_CSV = Path(__file__).with_name("composers.csv")
CSV_COLUMNS = ["name", "sort_name", "aliases", "born", "died"]
UNKNOWN = "Unknown"

FUZZY_THRESHOLD = 90.0  # lowest accepted score (0-100); see the module docstring
FUZZY_MARGIN = 3.0  # the best composer must beat every other composer by this much
FUZZY_MIN_LENGTH = 5  # letters in the folded label; shorter names are too close to each other to guess
GIVEN_NAME_SIMILARITY = 70.0  # a first name fits when it scores this against one of the composer's first names

# Labels that name no composer (folded; a trailing number or "artist"/"composer" word is ignored: "Unknown Artist 2").
PLACEHOLDERS = {
    "unknown", "unknown artist", "unknown composer", "unknown author", "unk", "unkn", "anonymous", "anon", "anonym",
    "anonyme", "anonimo", "anonimous", "anonymus", "anónimo", "anonymous composer", "various", "various artists",
    "various composers", "va", "v a", "traditional", "trad", "traditionnel", "tradicional", "traditionell",
    "tradizionale", "folk", "folk song", "folksong", "folk tune", "volkslied", "volksweise", "misc", "miscellaneous",
    "others", "other", "none", "null", "n a", "na", "no name", "noname", "nobody", "not known", "tba", "tbd",
    "unbekannt", "inconnu", "sconosciuto", "desconocido", "onbekend", "ukjent", "okand", "neznamy", "ismeretlen",
    "nieznany", "neizvesten", "christmas", "christmas carol", "christmas carols", "xmas", "carol", "carols",
    "hymn", "hymns", "hymnal", "spiritual", "spirituals", "national anthem", "anthem", "collection", "compilation",
    "public domain", "pd",
}
COLLECTIONS = {"christmas", "christmas carol", "christmas carols", "xmas", "carol", "carols", "hymn", "hymns",
               "hymnal", "spiritual", "spirituals", "collection", "compilation", "national anthem", "anthem"}
_PLACEHOLDER_NOISE = {"artist", "artists", "composer", "composers", "author"}
# Words that sit between first names and surname without naming anyone ("Ludwig van Beethoven", "Johann Strauss II").
PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "del", "della", "des", "du", "le", "la", "d", "y", "e",
             "ten", "ter", "af", "of", "the", "i", "ii", "iii", "jr", "sr", "junior", "senior", "elder", "younger",
             "fils", "pere", "padre", "sir", "dr"}


_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_LETTERS_NFKD_KEEPS = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ł": "l", "Ł": "L"})


def fold(text: str) -> str:
    """Lowercase ASCII words separated by single spaces: 'Dvořák, Antonín' -> 'dvorak antonin'."""
    text = str(text)
    if not text.isascii():  # the common all-ASCII label skips the Unicode work
        text = unicodedata.normalize("NFKD", text).translate(_LETTERS_NFKD_KEEPS)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_NOT_ALNUM.sub(" ", text.lower()).split())


def clean_label(raw: str) -> str:
    """A label as a person would write it: printable, single spaces, 'Surname, Firstname' -> 'Firstname Surname'."""
    text = unicodedata.normalize("NFC", str(raw or ""))
    text = "".join(c if c.isprintable() else " " for c in text).replace("_", " ")
    if text.count(",") == 1:
        surname, first = (part.strip() for part in text.split(","))
        text = f"{first} {surname}"
    return " ".join(text.replace(",", " ").split()).strip(" .-")


def _user_key(label: str) -> str:
    """How a user alias table matches labels: folded, or case-folded when the label has no Latin letters."""
    text = clean_label(label)
    return fold(text) or text.casefold()


def _title_word(word: str) -> str:
    """Capitalise words written all lower or all upper; keep deliberate casing like 'McDowell' or 'van'."""
    return word.capitalize() if word.islower() or word.isupper() else word


@dataclass(frozen=True)
class Resolution:
    """What a label became and why (`how`: exact, alias, fuzzy score NN, ambiguous, user alias, placeholder,
    unmatched; `prefix` is added by the prefix layout); `note` says more where there is more to say."""
    composer: str
    how: str
    note: str = ""

    @property
    def is_placeholder(self) -> bool:
        return self.composer == UNKNOWN


@dataclass
class Entry:
    name: str
    sort_name: str
    aliases: list[str]
    born: str
    died: str
    surname: str = ""  # folded
    given: set[str] = field(default_factory=set)  # folded first-name words from every listed spelling


def _split_sort_name(sort_name: str) -> tuple[str, str]:
    surname, _, given = sort_name.partition(",")
    return fold(surname), fold(given)


def _initials(given: str) -> list[str]:
    return [w[0] for w in given.split() if w not in PARTICLES]


def _spellings(entry: Entry) -> tuple[set[str], set[str]]:
    """(explicit spellings, generated spellings) of one entry, folded."""
    explicit = {fold(a) for a in entry.aliases if fold(a)}
    surname, given = entry.surname, _split_sort_name(entry.sort_name)[1]
    generated = {fold(entry.name), fold(entry.sort_name), f"{given} {surname}".strip()}
    initials = _initials(given)
    if initials:
        generated |= {" ".join([*initials, surname]), "".join(initials) + " " + surname}
    return explicit, generated - {""}


def load_entries(path: Path = CATALOGUE_CSV) -> list[Entry]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    entries = []
    for row in rows:
        entry = Entry(row["name"].strip(), row["sort_name"].strip(),
                      [a.strip() for a in row["aliases"].split("|") if a.strip()], row["born"], row["died"])
        entry.surname = _split_sort_name(entry.sort_name)[0]
        entries.append(entry)
    return entries


def _transposition_score(a: str, b: str) -> float:
    """rapidfuzz's Indel ratio (0-100) with each adjacent transposition costing one edit instead of two."""
    from rapidfuzz.distance import OSA, Indel, Levenshtein

    cost = Indel.distance(a, b) - (Levenshtein.distance(a, b) - OSA.distance(a, b))
    return 100.0 * (1.0 - cost / (len(a) + len(b))) if a or b else 100.0


class Catalogue:
    """The composer list as lookup tables; `resolve` is cached per distinct label, so a corpus of thousands of files
    with a few hundred labels costs a few hundred lookups."""

    def __init__(self, entries: list[Entry], user_aliases: dict[str, str] | None = None):
        self.entries = entries
        self.user_aliases = {_user_key(k): v for k, v in (user_aliases or {}).items() if _user_key(k)}
        self.spelling: dict[str, int] = {}  # folded spelling -> entry index
        self.display: set[str] = set()  # folded display and full names (`exact`, not `alias`)
        self.surnames: dict[str, list[int]] = {}  # folded surname (or a listed variant of it) -> entries
        self.conflicts: list[tuple[str, list[str]]] = []  # listed spellings claimed by two composers
        self._build()
        self._fuzzy_keys = list(self.spelling)
        self._cache: dict[str, Resolution] = {}

    def _build(self) -> None:
        explicit_owners: dict[str, set[int]] = {}
        generated_owners: dict[str, set[int]] = {}
        surname_count: dict[str, int] = {}
        for e in self.entries:
            surname_count[e.surname] = surname_count.get(e.surname, 0) + 1
        for i, e in enumerate(self.entries):
            explicit, generated = _spellings(e)
            if surname_count[e.surname] == 1:
                generated.add(e.surname)  # a surname only one listed composer has names that composer
            for key in explicit:
                explicit_owners.setdefault(key, set()).add(i)
            for key in generated - explicit:
                generated_owners.setdefault(key, set()).add(i)
            n_surname_words = len(e.surname.split())
            variants = {e.surname} | {k for k in explicit if len(k.split()) <= n_surname_words}
            for key in variants:
                self.surnames.setdefault(key, [])
                if i not in self.surnames[key]:
                    self.surnames[key].append(i)
            surname_words = {w for v in variants for w in v.split()}
            e.given = {w for k in explicit | generated for w in k.split()} - surname_words - PARTICLES
            e.given = {w for w in e.given if len(w) > 1}
            self.display |= {fold(e.name), fold(e.sort_name), f"{_split_sort_name(e.sort_name)[1]} {e.surname}"}
        for key, owners in explicit_owners.items():
            if len(owners) > 1:
                self.conflicts.append((key, sorted(self.entries[i].name for i in owners)))
            else:
                self.spelling[key] = next(iter(owners))
        for key, owners in generated_owners.items():
            if key not in explicit_owners and len(owners) == 1:  # shared generated spellings name nobody
                self.spelling[key] = next(iter(owners))

    # ------------------------------------------------------------------------------------------------ resolving

    def resolve(self, raw: str) -> Resolution:
        """What the label `raw` names, and why (see the module docstring); cached per distinct label."""
        raw = str(raw or "")
        if raw not in self._cache:
            self._cache[raw] = self._resolve(raw)
        return self._cache[raw]

    def _resolve(self, raw: str) -> Resolution:
        text = clean_label(raw)
        key = fold(text)
        if _user_key(raw) in self.user_aliases:
            target = self.user_aliases[_user_key(raw)]
            inner = self._resolve_listed(fold(clean_label(target)), clean_label(target))
            return Resolution(inner.composer, "user alias", f"your alias table says {target!r}")
        return self._resolve_listed(key, text)

    def _resolve_listed(self, key: str, text: str, guess: bool = True) -> Resolution | None:
        """The list's answer for a folded label; without `guess` no fuzzy match, and None when unmatched."""
        if not key and any(c.isalnum() for c in text):  # "Чайковский": letters, none of them Latin
            return Resolution(text, "unmatched", "no Latin letters to match: add a user alias to merge it")
        placeholder = self.placeholder_kind(key)
        if placeholder is not None:
            return Resolution(UNKNOWN, "placeholder", placeholder)
        if key in self.spelling:
            name = self.entries[self.spelling[key]].name
            return Resolution(name, "exact" if key in self.display else "alias")
        found = self._by_surname(key)
        if found is not None:
            return found
        if not guess:
            return None
        found = self._fuzzy(key)
        if found is not None:
            return found
        return Resolution(" ".join(_title_word(w) for w in text.split()), "unmatched", "not in the composer list")

    @staticmethod
    def placeholder_kind(key: str) -> str | None:
        """Why a folded label names no composer, or None when it may name one."""
        words = [w for w in key.split() if not w.isdigit()]
        core = " ".join(w for w in words if w not in _PLACEHOLDER_NOISE) or " ".join(words)
        if not key or not words:
            return "no composer given"
        if core in COLLECTIONS or " ".join(words) in COLLECTIONS:
            return "a collection, not a composer"
        if core in PLACEHOLDERS or " ".join(words) in PLACEHOLDERS:
            return "names no composer"
        return None

    def _by_surname(self, key: str) -> Resolution | None:
        """A listed surname (at the end or the start) with first names or initials that fit exactly one composer;
        a bare surname several composers share is `ambiguous`."""
        words = key.split()
        candidates: set[int] = set()
        for k in range(len(words)):  # surname = words[k:], given = words[:k]; then surname first
            for surname, given in ((words[k:], words[:k]), (words[:len(words) - k], words[len(words) - k:])):
                owners = self.surnames.get(" ".join(surname), [])
                if not given and len(owners) > 1:
                    names = ", ".join(sorted(self.entries[i].name for i in owners))
                    return Resolution(" ".join(_title_word(w) for w in key.split()), "ambiguous",
                                      f"a surname of several composers ({names}): add a first name or a user alias")
                candidates |= {i for i in owners if given and self._given_fits(given, self.entries[i])}
        if len(candidates) == 1:
            return Resolution(self.entries[candidates.pop()].name, "alias", "surname and first names")
        if len(candidates) > 1:
            names = ", ".join(sorted(self.entries[i].name for i in candidates))
            return Resolution(" ".join(_title_word(w) for w in key.split()), "ambiguous", f"could be {names}")
        return None

    @staticmethod
    def _given_fits(given: list[str], entry: Entry) -> bool:
        from rapidfuzz import fuzz

        initials = {w[0] for w in entry.given}
        for word in given:
            if word in PARTICLES or word in entry.given:
                continue
            if len(word) <= 3 and all(c in initials for c in word):  # "j", "js", "cpe"
                continue
            if len(word) >= 3 and any(fuzz.ratio(word, g) >= GIVEN_NAME_SIMILARITY for g in entry.given):
                continue
            return False
        return True

    def _fuzzy(self, key: str) -> Resolution | None:
        from rapidfuzz import fuzz, process

        if len(key.replace(" ", "")) < FUZZY_MIN_LENGTH:
            return None
        best: dict[int, float] = {}
        for spelling, _, _ in process.extract(key, self._fuzzy_keys, scorer=fuzz.ratio, score_cutoff=75, limit=25):
            owner = self.spelling[spelling]
            best[owner] = max(best.get(owner, 0.0), _transposition_score(key, spelling))
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        if not ranked or ranked[0][1] < FUZZY_THRESHOLD:
            return None
        if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < FUZZY_MARGIN:
            return None  # two composers about as close: guessing would merge the wrong one half the time
        owner, score = ranked[0]
        return Resolution(self.entries[owner].name, f"fuzzy score {int(score)}")

    def knows(self, raw: str) -> bool:
        """Whether `raw` is a listed spelling, a user alias or a placeholder, without fuzzy guessing (cheap enough
        for every file): the prefix layout's test for where the composer ends in `saint-saens-danse_macabre`."""
        key = fold(clean_label(raw))
        if _user_key(raw) in self.user_aliases:
            return True
        found = self._resolve_listed(key, "", guess=False)
        return found is not None and found.how != "ambiguous"


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The shipped list, loaded once per process."""
    return Catalogue(load_entries())
