"""Corpus layouts: how a folder of MIDI files says who composed each file and which work it is.

`folder` (`<Composer>/…/*.mid`), `giantmidi` (`Surname, Firstname, Title, id.mid`), `prefix` (`composer-title.mid` or
`Composer - Title.mid`: the longest listed composer at the start wins), `csv` (`metadata.csv` with composer and path
columns) and `auto` (picks one; a folder of corpora, each subfolder with its own metadata.csv such as
`../shared/corpora`, is read corpus by corpus and their files joined). `collect_files` returns one SourceFile per input file; composer labels are raw here
and resolved later by organize against the composer list (mozart.data.composer_catalogue).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from mozart.data.composer_catalogue import Catalogue, default_catalogue
from mozart.errors import DataError

MIDI_SUFFIXES = (".mid", ".midi")
LAYOUTS = ("auto", "folder", "giantmidi", "prefix", "csv")
# GiantMIDI-Piano: "Surname, Firstname, Title, <11-character YouTube id>.mid"
_GIANTMIDI_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
# metadata.csv columns, most specific first: ASAP has midi_score + midi_performance (work = folder),
# piano-midi.de has midi, MAESTRO has midi_filename + canonical_composer/canonical_title.
_CSV_PATH_COLUMNS = ("midi_score", "midi_performance", "midi", "midi_filename", "midi_path", "path", "file",
                     "filename")
_CSV_COMPOSER_COLUMNS = ("composer", "canonical_composer", "artist")
_CSV_TITLE_COLUMNS = ("title", "canonical_title", "name")
_CSV_WORK_COLUMNS = ("folder", "work", "work_id")


@dataclass(frozen=True)
class SourceFile:
    """One input file as a layout reads it (composer raw, normalised later)."""
    source_path: str  # the manifest's source_path: relative to the source folder (or "music21:<corpus path>")
    path: Path  # the file to read
    composer: str
    title: str
    work_key: str = ""  # explicit work grouping (ASAP's folder); empty = composer + title
    reason: str = ""  # set when the file is rejected before reading (a failed music21 conversion)
    via_prefix: bool = False  # composer = the longest listed name at the start of a prefix-layout file name


def list_midi_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def _giantmidi_parts(stem: str) -> list[str] | None:
    parts = [p.strip() for p in stem.split(",")]
    return parts if len(parts) >= 4 and _GIANTMIDI_ID.match(parts[-1]) else None


def _folder(root: Path, path: Path) -> SourceFile:
    rel = path.relative_to(root)
    composer = rel.parts[0] if len(rel.parts) > 1 else ""
    title = " ".join([*rel.parts[1:-1], path.stem])
    return SourceFile(rel.as_posix(), path, composer, title.replace("_", " "))


def _giantmidi(root: Path, path: Path) -> SourceFile:
    parts = _giantmidi_parts(path.stem)
    if parts is None:  # not quite the pattern: "Composer, Title" at best
        head, _, tail = path.stem.partition(",")
        return SourceFile(path.relative_to(root).as_posix(), path, head if tail else "", tail or head)
    return SourceFile(path.relative_to(root).as_posix(), path, f"{parts[0]}, {parts[1]}", ", ".join(parts[2:-1]))


MAX_PREFIX_PARTS = 4  # dash-separated parts a composer name may span ("carl-philipp-emanuel-bach-...")


def _prefix(root: Path, path: Path, catalogue: Catalogue) -> SourceFile:
    """`Composer - Title` splits at the first ' - '; `composer-title` after the longest listed composer at the start
    (`saint-saens-danse_macabre`, `rimsky-korsakov-...`), else at the first dash."""
    rel, stem = path.relative_to(root).as_posix(), path.stem
    if " - " in stem:
        composer, _, title = stem.partition(" - ")
        return SourceFile(rel, path, composer.strip(), title.strip().replace("_", " "))
    parts = stem.split("-")
    if len(parts) < 2:
        return SourceFile(rel, path, "", stem.replace("_", " "))
    cut = next((k for k in range(min(len(parts) - 1, MAX_PREFIX_PARTS), 1, -1)
                if catalogue.knows("-".join(parts[:k]))), 1)
    return SourceFile(rel, path, "-".join(parts[:cut]), "-".join(parts[cut:]).replace("_", " "), via_prefix=cut > 1)


def _pick(columns: list[str], wanted: tuple[str, ...]) -> list[str]:
    lower = {c.lower().strip(): c for c in columns}
    return [lower[w] for w in wanted if w in lower]


def _csv(root: Path, files: list[Path]) -> list[SourceFile]:
    """metadata.csv rows -> files (matched case-insensitively); files the CSV misses fall back to their folder."""
    import pandas as pd

    csv_path = root / "metadata.csv"
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"{csv_path} is not a readable CSV ({exc}): fix it or set organize.layout: folder") from None
    columns = list(table.columns)
    path_cols, composer_cols = _pick(columns, _CSV_PATH_COLUMNS), _pick(columns, _CSV_COMPOSER_COLUMNS)
    if not path_cols or not composer_cols:
        raise DataError(f"{csv_path} needs a composer column ({', '.join(_CSV_COMPOSER_COLUMNS)}) and a MIDI path "
                        f"column ({', '.join(_CSV_PATH_COLUMNS)}); it has {', '.join(columns)}. "
                        "Rename them or set organize.layout: folder")
    title_cols, work_cols = _pick(columns, _CSV_TITLE_COLUMNS), _pick(columns, _CSV_WORK_COLUMNS)
    by_key = {p.relative_to(root).as_posix().casefold(): p for p in files}
    listed: dict[Path, tuple[str, str, str]] = {}  # file -> (composer, title, work); first row naming it wins
    for record in table.to_dict("records"):
        for col in path_cols:
            value = record[col].strip().replace("\\", "/").removeprefix("./")
            path = by_key.get(value.casefold()) if value else None
            if path is not None and path not in listed:
                listed[path] = (record[composer_cols[0]], record[title_cols[0]] if title_cols else path.stem,
                                record[work_cols[0]] if work_cols else "")
    # Several files under one title (ASAP: the score and its performances) get the file name added to the title.
    per_title = Counter((composer, title) for composer, title, _ in listed.values())
    # A file the CSV misses takes the composer of its listed neighbours when they agree, else its folder's name.
    folder_composers: dict[Path, set[str]] = {}
    for path, (composer, _, _) in listed.items():
        folder_composers.setdefault(path.parent, set()).add(composer)
    # ... or, failing that, the folder layout below the folder all listed files share (piano-midi.de: midis/).
    base = Path(os.path.commonpath([p.parent for p in listed])) if listed else root
    out = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path in listed:
            composer, title, work = listed[path]
            title = title.replace("_", " ").strip() or path.stem
            if per_title[listed[path][:2]] > 1:
                work = work or title
                title = f"{title} ({path.stem})"
            out.append(SourceFile(rel, path, composer, title, work.strip()))
        else:
            neighbours = folder_composers.get(path.parent, set())
            fallback = _folder(base if base in path.parents else root, path)
            composer = next(iter(neighbours)) if len(neighbours) == 1 else fallback.composer
            out.append(SourceFile(rel, path, composer, path.stem.replace("_", " ")))
    return out


def detect_layout(root: Path, files: list[Path]) -> str:
    """`auto`: csv when metadata.csv exists, else giantmidi when most names match it, else folder when most files
    sit in a composer folder, else prefix when names look like composer-title, else folder."""
    if (root / "metadata.csv").is_file():
        return "csv"
    if sum(_giantmidi_parts(p.stem) is not None for p in files) * 2 > len(files):
        return "giantmidi"
    if sum(len(p.relative_to(root).parts) > 1 for p in files) * 2 > len(files):
        return "folder"
    if sum("-" in p.stem for p in files) * 2 > len(files):
        return "prefix"
    return "folder"


def collect_files(root: Path, layout: str, catalogue: Catalogue | None = None) -> tuple[str, list[SourceFile]]:
    """(layout used, one SourceFile per .mid/.midi file under `root`); clear errors for a missing or empty source.
    `catalogue` (default: the shipped composer list) tells the prefix layout where a composer's name ends."""
    if layout not in LAYOUTS:
        raise DataError(f"organize.layout = {layout!r} is not one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise DataError(f"organize.source folder {root} does not exist: fix organize.source in params.yaml "
                        "(a folder path, or music21 for the embedded corpus)")
    if not root.is_dir():
        raise DataError(f"organize.source {root} is not a folder: point organize.source at a folder of MIDI files")
    files = list_midi_files(root)
    if not files:
        raise DataError(f"organize.source folder {root} has no .mid/.midi files: add some or use "
                        "organize.source: music21")
    if layout == "auto" and (parts := _corpus_parts(root)):
        return _collection(root, parts, files, catalogue)
    if layout == "auto":
        layout = detect_layout(root, files)
    if layout == "csv":
        if not (root / "metadata.csv").is_file():
            raise DataError(f"organize.layout is csv but {root / 'metadata.csv'} does not exist")
        return layout, [_reject_undecodable(f) for f in _csv(root, files)]
    if layout == "prefix":
        catalogue = catalogue or default_catalogue()
        return layout, [_reject_undecodable(_prefix(root, p, catalogue)) for p in files]
    parse = {"folder": _folder, "giantmidi": _giantmidi}[layout]
    return layout, [_reject_undecodable(parse(root, p)) for p in files]


def _reject_undecodable(f: SourceFile) -> SourceFile:
    """A path that is not valid UTF-8 (Python keeps its bytes as surrogates, which no manifest can store) becomes a
    rejected row with the bad bytes shown as \\xNN escapes; the other files go on."""
    def shown(text: str) -> str:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    if shown(f.source_path) == f.source_path:
        return f
    return replace(f, source_path=shown(f.source_path), composer=shown(f.composer), title=shown(f.title),
                   work_key=shown(f.work_key), reason="path is not valid UTF-8: rename the file or folder to UTF-8")


def _corpus_parts(root: Path) -> list[Path]:
    """Subfolders that are corpora of their own (each with a metadata.csv) when `root` itself has none."""
    if (root / "metadata.csv").is_file():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "metadata.csv").is_file())


def _collection(root: Path, parts: list[Path], files: list[Path],
                catalogue: Catalogue | None) -> tuple[str, list[SourceFile]]:
    """Each corpus read with its own layout; paths and work keys get the corpus folder in front, so two corpora's
    works never merge. Files outside every corpus folder are read with the folder layout."""
    out, layouts = [], []
    for part in parts:
        layout, found = collect_files(part, "auto", catalogue)
        layouts.append(f"{part.name}: {layout}")
        out += [replace(f, source_path=f"{part.name}/{f.source_path}",
                        work_key=f"{part.name}/{f.work_key}" if f.work_key else "") for f in found]
    rest = [p for p in files if not any(part in p.parents for part in parts)]
    out += [_reject_undecodable(_folder(root, p)) for p in rest]
    return f"corpora ({', '.join(layouts)})", out
