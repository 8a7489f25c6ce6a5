"""organize stage: any corpus -> data/organized/<Composer>/<piece>.mid + manifest.parquet (see docs/CONTRACTS.md).

Input is the embedded music21 corpus (`mozart.data.music21_export`) or a folder of MIDI files in one of the layouts
below (`collect_files`). Every input file gets exactly one manifest row: `accepted` (copied byte for byte), `duplicate`
(same sha256 as an accepted file, kept once) or `rejected` (with a reason a person understands). Files are read in
crash/hang-isolated workers (`mozart.infra.isolate`), so one hostile file costs one row, not the run. The output folder is
built beside data/organized and swapped in whole (`mozart.infra.atomic.atomic_dir`).

`source_path` is relative to the source folder (`music21:<corpus path>` for the embedded corpus), so a manifest is
the same on every machine. `work_id` is `<Composer>/<folded work key>`: ASAP's `folder` column, else the title;
a duplicate merges its work with the kept piece's, so prepare never puts the same music in two splits.

Composer labels are matched to the shipped composer list (`mozart.data.composer_catalogue`), once per distinct
label; `composers.json` beside the manifest records every label, what it became and why
(`mozart.data.composer_audit`). Placeholder labels (Unknown, Anonymous, Christmas, ...) become composer `Unknown`.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mozart.config import OrganizeConfig
from mozart.data.composer_audit import audit, count_labels, load_user_aliases
from mozart.data.composer_catalogue import (
    UNKNOWN,
    Catalogue,
    Resolution,
    default_catalogue,
    load_entries,
)
from mozart.data.midi_check import (  # noqa: F401 (diagnose)
    UNWRAPPED_REASON,
    check_midi,
    diagnose,
    read_midi_bytes,
)
from mozart.data.names import fold, safe_dirname
from mozart.errors import ConfigError, DataError
from mozart.infra.atomic import write_json

MANIFEST_COLUMNS = ["source_path", "piece_id", "work_id", "composer", "title", "content_hash", "status", "reason",
                    "out_path"]


@dataclass(frozen=True)
class OrganizeSummary:
    files_in: int
    accepted: int
    duplicates: int
    rejected: int
    composers: int  # distinct composers of accepted files, `Unknown` not counted
    layout: str
    labels: int = 0  # distinct composer labels seen
    merges: int = 0  # labels renamed onto a listed composer spelled differently (all in composers.json)
    fuzzy_merges: int = 0  # ... of which by a fuzzy match: the ones to check first
    placeholder_labels: int = 0  # labels that name no composer (Unknown, Anonymous, Christmas, ...)
    unknown_composer: int = 0  # accepted files whose composer is unknown

    def line(self, out_dir: Path) -> str:
        return (f"organize ({self.layout}): {self.files_in} files in, {self.accepted} accepted, "
                f"{self.duplicates} duplicates, {self.rejected} rejected; {self.composers} composers from "
                f"{self.labels} labels ({self.merges} merges, {self.fuzzy_merges} of them fuzzy; "
                f"{self.placeholder_labels} placeholder labels, {self.unknown_composer} accepted files without a "
                f"composer) (list in {out_dir / 'manifest.parquet'}, labels in {out_dir / 'composers.json'})")


# --------------------------------------------------------------------------------------------------------- layouts

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
    if layout == "auto":
        layout = detect_layout(root, files)
    if layout == "csv":
        if not (root / "metadata.csv").is_file():
            raise DataError(f"organize.layout is csv but {root / 'metadata.csv'} does not exist")
        return layout, _csv(root, files)
    if layout == "prefix":
        catalogue = catalogue or default_catalogue()
        return layout, [_prefix(root, p, catalogue) for p in files]
    parse = {"folder": _folder, "giantmidi": _giantmidi}[layout]
    return layout, [parse(root, p) for p in files]


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------------------- manifest

def _unique_name(composer_dir: str, title: str, taken: set[str]) -> str:
    """`<dir>/<title>`, made unique (case-insensitively, for macOS/Windows checkouts) with ' (2)', ' (3)', ..."""
    base = safe_dirname(title, max_bytes=90)
    name, k = base, 1
    while f"{composer_dir}/{name}".casefold() in taken:
        k += 1
        name = f"{base} ({k})"
    taken.add(f"{composer_dir}/{name}".casefold())
    return f"{composer_dir}/{name}"


def resolve_label(catalogue: Catalogue, f: SourceFile) -> Resolution:
    """What the file's composer label became and why (`prefix` when the prefix layout found a hyphenated name)."""
    found = catalogue.resolve(f.composer)
    if f.via_prefix and found.how in ("exact", "alias"):
        return Resolution(found.composer, "prefix", f"longest listed composer at the start of the name ({found.how})")
    return found


def build_manifest(files: list[SourceFile], timeout_s: float, n_jobs: int,
                   catalogue: Catalogue | None = None) -> list[dict]:
    """One row per input file, sorted by source_path; decides accepted / duplicate / rejected and names pieces."""
    from mozart.infra.isolate import map_isolated

    catalogue = catalogue or default_catalogue()

    files = sorted(files, key=lambda f: f.source_path)
    readable = [f for f in files if not f.reason]
    outcomes = map_isolated(check_midi, [str(f.path) for f in readable], n_jobs=n_jobs, timeout_s=timeout_s,
                            desc="reading MIDI")
    checked = {id(f): o for f, o in zip(readable, outcomes)}
    rows, kept_by_hash, taken = [], {}, set()
    for f in files:
        composer = resolve_label(catalogue, f).composer
        title = " ".join(f.title.split()) or Path(f.source_path).stem
        work_id = f"{composer}/{fold(f.work_key or title) or fold(Path(f.source_path).stem)}"
        row = {"source_path": f.source_path, "piece_id": "", "composer": composer, "title": title,
               "work_id": work_id, "own_work_id": work_id,
               "content_hash": "", "status": "rejected", "reason": f.reason, "out_path": ""}
        outcome = checked.get(id(f))
        if outcome is None:  # rejected before reading (a failed music21 conversion)
            pass
        elif not outcome.ok:
            row["reason"] = outcome.reason
            row["content_hash"] = _sha256(f.path)
        else:
            digest, _, unwrapped = outcome.value
            row["content_hash"] = digest
            kept = kept_by_hash.get(digest)
            if kept is not None:  # same bytes as a piece already kept: it joins that piece's work for the splits
                row.update(status="duplicate", reason=f"duplicate of {kept['piece_id']}", work_id=kept["work_id"])
            else:
                piece_id = _unique_name(safe_dirname(composer), title, taken)
                row.update(status="accepted", piece_id=piece_id, out_path=f"{piece_id}.mid",
                           reason=UNWRAPPED_REASON if unwrapped else "")
                kept_by_hash[digest] = row
        rows.append(row)
    return _merge_linked_works(rows)


def _merge_linked_works(rows: list[dict]) -> list[dict]:
    """A duplicate links its own work to the kept piece's (ASAP has the same performance under '18-2' and
    '18-2_no_repeat'): merge linked works into one work_id, so no split holds the same music twice."""
    parent: dict[str, str] = {}

    def find(w: str) -> str:
        while parent.get(w, w) != w:
            w = parent[w]
        return w

    for row in rows:
        if row["status"] == "duplicate":
            a, b = sorted((find(row["own_work_id"]), find(row["work_id"])))
            parent[b] = a
    for row in rows:
        row["work_id"] = find(row.pop("own_work_id"))
    return rows


def _write_outputs(rows: list[dict], files: list[SourceFile], out_dir: Path) -> None:
    import pandas as pd

    path_of = {f.source_path: f.path for f in files}
    for row in rows:
        if row["status"] == "accepted":
            target = out_dir / row["out_path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if row["reason"] == UNWRAPPED_REASON:  # the MIDI file inside the RIFF container, so tokenize can read it
                target.write_bytes(read_midi_bytes(path_of[row["source_path"]])[0])
            else:
                shutil.copyfile(path_of[row["source_path"]], target)
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(str)
    table.to_parquet(out_dir / "manifest.parquet", index=False)


def summarize(rows: list[dict], layout: str, resolutions: dict[str, Resolution] | None = None) -> OrganizeSummary:
    status = [r["status"] for r in rows]
    accepted = [r["composer"] for r in rows if r["status"] == "accepted"]
    labels = count_labels(resolutions or {})
    return OrganizeSummary(len(rows), status.count("accepted"), status.count("duplicate"), status.count("rejected"),
                           len(set(accepted) - {UNKNOWN}), layout, labels.labels, labels.merges, labels.fuzzy,
                           labels.placeholders, accepted.count(UNKNOWN))


def write_audit(files: list[SourceFile], catalogue: Catalogue, out_dir: Path) -> dict[str, Resolution]:
    """composers.json: every label seen, what it became and why; returns label -> resolution."""
    resolutions = {f.composer: resolve_label(catalogue, f) for f in sorted(files, key=lambda f: f.source_path)}
    write_json(out_dir / "composers.json", audit(resolutions, Counter(f.composer for f in files)))
    return resolutions


def load_catalogue(cfg: OrganizeConfig) -> Catalogue:
    """The shipped composer list, with the user's `organize.aliases` table on top when one is set."""
    if not cfg.aliases:
        return default_catalogue()
    return Catalogue(load_entries(), load_user_aliases(Path(cfg.aliases).expanduser()))


# ---------------------------------------------------------------------------------------------------------- stage

def _music21_files(staging: Path, cfg: OrganizeConfig) -> list[SourceFile]:
    from mozart.data.music21_export import export_corpus

    results = export_corpus(staging, cfg.min_works_per_composer, cfg.max_works_per_composer, cfg.timeout_s,
                            cfg.n_jobs)
    return [SourceFile(source_path=f"music21:{work.corpus_path}", path=midi_path, composer=work.composer,
                       title=work.title, reason=reason) for work, midi_path, reason in results]


def organize(cfg: OrganizeConfig, source: str | Path, out_dir: Path) -> OrganizeSummary:
    """Run the stage: `source` is "music21" or a resolved folder (`mozart.config.resolve_source`)."""
    from mozart.infra.atomic import atomic_dir

    out_dir = Path(out_dir)
    if cfg.n_jobs == 0:
        raise ConfigError("params.yaml: organize.n_jobs must be a worker count or negative (-1 = all cores), not 0")
    catalogue = load_catalogue(cfg)  # a bad alias table fails before any work
    if source != "music21":  # fail before touching the old output
        layout, files = collect_files(Path(source), cfg.layout, catalogue)
    with atomic_dir(out_dir) as tmp:
        if source == "music21":
            staging = tmp / ".music21-export"  # inside the output's temp folder: nothing cached outside data/
            layout, files = "music21", _music21_files(staging, cfg)
        rows = build_manifest(files, cfg.timeout_s, cfg.n_jobs, catalogue)
        _write_outputs(rows, files, tmp)
        resolutions = write_audit(files, catalogue, tmp)
        if source == "music21":
            shutil.rmtree(staging)
    return summarize(rows, layout, resolutions)
