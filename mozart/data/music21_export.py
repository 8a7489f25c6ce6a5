"""The embedded default corpus: scores that ship inside the `music21` package, exported to MIDI by composer.

The `music21` stage writes the export to `data/music21/` (MIDI files plus `works.json`, which says composer, title
and corpus path of each), and the default `organize.source: data/music21` reads it, so a fresh machine with no user
data has a corpus and DVC tracks it as any other stage output. When `organize.source` names another folder, the
stage writes only `works.json` with no works (the export is skipped). The selection is static and deterministic
(no timing decides what gets in): for every composer collection in `COLLECTIONS`, take the playable score files
(MusicXML, Humdrum, ABC; not the roman-numeral analyses), one format per piece, leave out the few scores that take
music21 tens of seconds to parse (`MAX_SCORE_BYTES`), spread `max_works_per_composer` picks evenly over the sorted
list (so Palestrina is not 40 Agnus Dei), and keep composers with at least `min_works_per_composer` works.

Each score is parsed with music21 (`forceSource=True`: no pickle cache is read or written outside data/) and written
with symusic from its notes. music21's own MIDI writer expands repeats (and fails on badly formed ones) and takes
up to a minute on a string quartet; reading notes/offsets ourselves takes milliseconds and gives identical bytes
every run. Conversions run in parallel in crash/hang-isolated workers (`mozart.infra.isolate`), each bounded by
`organize.timeout_s`; a failed conversion becomes a `rejected` manifest row, never a lost piece.
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mozart.errors import DataError

# music21 corpus collection -> composer as written in the corpus (normalised later by mozart.data.names).
# Collections of folk tunes (essenFolksong, ryansMammoth, ...) and anthologies of many composers (trecento) are left
# out: they have no single composer. With the default caps, 9 composers have >= 5 works.
COLLECTIONS = {
    "bach": "Bach, Johann Sebastian", "beethoven": "Beethoven, Ludwig van", "haydn": "Haydn, Joseph",
    "josquin": "Josquin des Prez", "monteverdi": "Monteverdi, Claudio", "mozart": "Mozart, Wolfgang Amadeus",
    "palestrina": "Palestrina, Giovanni Pierluigi da", "schumann_robert": "Schumann, Robert",
    "schumann_clara": "Schumann, Clara", "schubert": "Schubert, Franz", "chopin": "Chopin, Frederic",
    "handel": "Handel, George Frideric", "corelli": "Corelli, Arcangelo", "cpebach": "Carl Philipp Emanuel Bach",
    "schoenberg": "Schoenberg, Arnold", "weber": "Weber, Carl Maria von", "verdi": "Verdi, Giuseppe",
    "joplin": "Joplin, Scott", "beach": "Beach, Amy", "webern": "Webern, Anton", "ciconia": "Ciconia, Johannes",
}
# Preferred format first when a piece ships in several (beethoven/opus18no1 has both .krn and .mxl).
FORMATS = (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mei")
# Uncompressed score size above which music21 needs 10-30 s per file on one core (full string quartets);
# leaving them out keeps the whole export near one minute on 2 cores.
MAX_SCORE_BYTES = 2_000_000
TICKS_PER_QUARTER = 480
DEFAULT_VELOCITY = 80


@dataclass(frozen=True)
class Music21Work:
    corpus_path: str  # relative to music21's corpus folder, e.g. "beethoven/opus18no1/movement1.mxl"
    path: Path
    composer: str  # as written in COLLECTIONS
    title: str  # from the file name: "opus18no1 movement1"


def _score_bytes(path: Path) -> int:
    """Uncompressed size of a score (an .mxl is a zip): a cheap, static proxy for music21's parse time."""
    if path.suffix == ".mxl":
        try:
            with zipfile.ZipFile(path) as zf:
                return sum(info.file_size for info in zf.infolist() if not info.filename.startswith("META-INF"))
        except zipfile.BadZipFile:
            return 0
    return path.stat().st_size


def _spread(items: list, cap: int) -> list:
    """`cap` items evenly spaced over `items` (all of them when cap is 0 or large enough)."""
    if cap <= 0 or len(items) <= cap:
        return items
    return [items[i * len(items) // cap] for i in range(cap)]


def select_works(min_works: int, max_works: int, collections: dict[str, str] | None = None) -> list[Music21Work]:
    """The deterministic export selection, sorted by corpus path."""
    import music21
    from music21 import corpus

    root = Path(music21.__file__).parent / "corpus"
    selected: list[Music21Work] = []
    for collection, composer in sorted((collections or COLLECTIONS).items()):
        by_piece: dict[Path, Path] = {}
        for path in corpus.getComposer(collection):
            path = Path(path)
            rel = path.relative_to(root)
            if rel.parts[0] != collection or path.suffix not in FORMATS:
                continue
            stem = rel.with_suffix("")
            if stem not in by_piece or FORMATS.index(path.suffix) < FORMATS.index(by_piece[stem].suffix):
                by_piece[stem] = path
        paths = [p for _, p in sorted(by_piece.items()) if _score_bytes(p) <= MAX_SCORE_BYTES]
        paths = _spread(paths, max_works)
        if len(paths) < max(1, min_works):
            continue
        for path in paths:
            rel = path.relative_to(root)
            title = " ".join(rel.with_suffix("").parts[1:])
            selected.append(Music21Work(rel.as_posix(), path, composer, title))
    return selected


def score_to_midi(m21_score):
    """A music21 Score (or Part/Opus) -> symusic Score: one piano track per part, ties merged, grace notes dropped."""
    from music21 import harmony, meter, note, stream, tempo
    from symusic import Note, Score, Tempo, TimeSignature, Track

    if isinstance(m21_score, stream.Opus):  # ABC files hold one voice per tune (Josquin): stack them
        m21_score = m21_score.mergeScores()
    tpq = TICKS_PER_QUARTER
    out = Score(tpq)
    parts = list(m21_score.parts) if hasattr(m21_score, "parts") and m21_score.parts else [m21_score]
    conductor = parts[0].flatten()
    for mark in conductor.getElementsByClass(tempo.MetronomeMark):
        qpm = mark.getQuarterBPM()
        if qpm:
            out.tempos.append(Tempo(round(float(mark.offset) * tpq), float(qpm)))
    for ts in conductor.getElementsByClass(meter.TimeSignature):
        out.time_signatures.append(TimeSignature(round(float(ts.offset) * tpq), ts.numerator, ts.denominator))
    for i, part in enumerate(parts):
        track = Track(name=str(part.partName or f"part {i + 1}"), program=0)
        open_ties: dict[int, int] = {}  # midi pitch -> index of the note a tie continues
        for element in part.flatten().notes:
            if isinstance(element, harmony.ChordSymbol):  # chord names above the staff, not notes played
                continue
            quarter_length = float(element.duration.quarterLength)
            if quarter_length <= 0:  # grace notes
                continue
            start = round(float(element.offset) * tpq)
            end = start + max(1, round(quarter_length * tpq))
            velocity = element.volume.velocity or DEFAULT_VELOCITY
            for n in (element.notes if hasattr(element, "notes") else [element]):
                if not isinstance(n, note.Note):  # unpitched percussion
                    continue
                pitch = n.pitch.midi
                tie_mark = n.tie or element.tie  # a chord may carry the tie for all its notes
                tie = tie_mark.type if tie_mark is not None else None
                if tie in ("continue", "stop") and pitch in open_ties:
                    held = track.notes[open_ties[pitch]]
                    held.duration = end - held.time
                    if tie == "stop":
                        del open_ties[pitch]
                    continue
                track.notes.append(Note(start, end - start, pitch, int(velocity)))
                if tie == "start":
                    open_ties[pitch] = len(track.notes) - 1
        out.tracks.append(track)
    return out


def export_work(source: Path, out_path: Path) -> int:
    """Parse one corpus score and write it as MIDI; returns its note count. Runs inside an isolated worker."""
    from music21 import converter

    from mozart.infra.isolate import Rejected

    with warnings.catch_warnings():  # music21 warns about every overfull measure; the manifest has what matters
        warnings.simplefilter("ignore")
        m21_score = converter.parse(source, forceSource=True)
        midi = score_to_midi(m21_score)
    if midi.note_num() == 0:
        raise Rejected("no notes")
    out_path.write_bytes(midi.dumps_midi())
    return midi.note_num()


def export_corpus(out_dir: Path, min_works: int, max_works: int, timeout_s: float, n_jobs: int,
                  collections: dict[str, str] | None = None) -> list[tuple[Music21Work, Path, str]]:
    """Export the selection into `out_dir` (a staging folder inside data/); returns (work, midi path, reason) per
    selected work, reason empty on success."""
    import music21  # noqa: F401  imported before the workers fork, so each does not pay for it again

    from mozart.infra.isolate import map_isolated

    works = select_works(min_works, max_works, collections)
    if not works:
        raise DataError(f"the music21 corpus has no composer with at least {min_works} works "
                        "(organize.min_works_per_composer): lower it in params.yaml")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(work.path, out_dir / f"{i:05d}.mid") for i, work in enumerate(works)]
    outcomes = map_isolated(_export_job, jobs, n_jobs=n_jobs, timeout_s=timeout_s, desc="music21 -> MIDI")
    results = []
    for work, (_, midi_path), outcome in zip(works, jobs, outcomes):
        reason = "" if outcome.ok else f"music21 conversion failed: {outcome.reason}"
        results.append((work, midi_path, reason))
    return results


def _export_job(job: tuple[Path, Path]) -> int:
    return export_work(*job)


# ------------------------------------------------------------------------------------------ the music21 stage's output

WORKS_FILE = "works.json"  # marks a folder as a music21 export; organize reads it instead of guessing a layout
EXPORT_DIR = "data/music21"  # the default organize.source, written by the music21 stage


def run(cfg, seed: int | None, paths) -> dict:
    """The music21 stage (stage contract: mozart/paths.py): export the selection to `paths.export_dir`, or, when
    organize.source names another folder, write an empty export. `cfg` is the OrganizeConfig; no randomness."""
    from mozart.paths import resolve_source
    from mozart.infra.atomic import atomic_dir, write_json

    wanted = resolve_source(cfg.source, paths.repo_dir) == (Path(paths.repo_dir) / EXPORT_DIR).resolve()
    with atomic_dir(paths.export_dir) as tmp:
        results = export_corpus(tmp, cfg.min_works_per_composer, cfg.max_works_per_composer, cfg.timeout_s,
                                cfg.n_jobs) if wanted else []
        works = [{"corpus_path": w.corpus_path, "file": midi.name, "composer": w.composer, "title": w.title,
                  "reason": reason} for w, midi, reason in results]
        write_json(tmp / WORKS_FILE, {"used": wanted, "works": works})
    return {"works": len(works), "converted": sum(not w["reason"] for w in works), "used": int(wanted)}


def read_export(folder: Path) -> list[dict]:
    """The works of an export folder (corpus_path, file, composer, title, reason), in export order."""
    from mozart.infra.atomic import read_json

    export = read_json(Path(folder) / WORKS_FILE, "run the music21 stage first (`dvc repro music21`)")
    if not export.get("used", True):
        raise DataError(f"{folder} is an empty music21 export (organize.source named another folder when it was "
                        "written): run `dvc repro music21`")
    return export["works"]
