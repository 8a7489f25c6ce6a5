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

import dataclasses
import hashlib
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
from mozart.data.layouts import (LAYOUTS, MIDI_SUFFIXES, SourceFile, collect_files,  # noqa: F401 (re-exported)
                                 detect_layout, list_midi_files)
from mozart.data.names import fold, safe_dirname
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

def _music21_files(folder: Path) -> list[SourceFile]:
    """The works of a music21 export folder (written by the music21 stage), as the layouts' SourceFile rows."""
    from mozart.data.music21_export import read_export

    return [SourceFile(source_path=f"music21:{w['corpus_path']}", path=folder / w["file"], composer=w["composer"],
                       title=w["title"], reason=w["reason"]) for w in read_export(folder)]


def organize(cfg: OrganizeConfig, source: str | Path, out_dir: Path) -> OrganizeSummary:
    """Run the stage on a resolved source folder (`mozart.paths.resolve_source`); a music21 export folder (one with
    works.json, written by the music21 stage) is read with its own metadata instead of a layout."""
    from mozart.data.music21_export import WORKS_FILE
    from mozart.infra.atomic import atomic_dir

    out_dir, source = Path(out_dir), Path(source)
    catalogue = load_catalogue(cfg)  # a bad alias table fails before any work
    if (source / WORKS_FILE).is_file():
        layout, files = "music21", _music21_files(source)
    else:  # fail before touching the old output
        layout, files = collect_files(source, cfg.layout, catalogue)
    with atomic_dir(out_dir) as tmp:
        rows = build_manifest(files, cfg.timeout_s, cfg.n_jobs, catalogue)
        _write_outputs(rows, files, tmp)
        resolutions = write_audit(files, catalogue, tmp)
    return summarize(rows, layout, resolutions)


def run(cfg: OrganizeConfig, seed: int | None, paths) -> dict:
    """The organize stage (stage contract: mozart/paths.py OrganizePaths): organize.source -> paths.organized_dir.
    Deterministic (no seed). Returns the OrganizeSummary fields."""
    from mozart.paths import resolve_source

    return dataclasses.asdict(organize(cfg, resolve_source(cfg.source, paths.repo_dir), paths.organized_dir))
