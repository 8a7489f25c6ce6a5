"""organize + tokenize + prepare over ~300 messy MIDI files (tests/fuzz_midi.py): no crash, no hang, every input
accounted for exactly once with a human reason, nothing written outside the outputs (issue #6)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fuzz_midi import make_fuzz_corpus
from stage_helpers import FAST, all_paths, file_hashes, make_repo_copy, run_stage, write_organized

pytestmark = pytest.mark.slow

N_FILES = 300
SEED = 20240606
STATUSES = {"accepted", "duplicate", "rejected"}
# Kinds no MIDI parser can read: they must be rejected (never accepted, never crash the run).
UNREADABLE = {"zero_length", "text", "png", "garbage", "endless_vlq", "no_status", "mthd_then_garbage"}
NO_PIANO_NOTES = {"zero_tracks", "header_only", "empty_tracks", "drums_only"}


# A reason that *starts* with a Python exception name ("ZeroDivisionError: division by zero") is a leaked bug, not
# a reason a user can act on; parser details inside a human prefix ("not a MIDI file (RuntimeError: ...)") are fine.
RAW_EXCEPTION = re.compile(r"^[A-Z]\w*(Error|Exception|Interrupt|Exit)\b")


def human_reason(reason: str) -> bool:
    return len(reason.strip()) >= 5 and "\n" not in reason and "Traceback" not in reason \
        and not RAW_EXCEPTION.match(reason)


def _source_of(value: str, corpus: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else corpus / p


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    corpus = base / "corpus"
    kinds: dict[Path, str] = {}
    files = make_fuzz_corpus(corpus, N_FILES, SEED, kinds=kinds)
    (corpus / "README.txt").write_text("not music\n")  # stray non-MIDI files, as real corpora have
    (corpus / "Bach" / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    corpus_before = file_hashes(corpus)
    root = make_repo_copy(base / "repo", {
        "organize.source": str(corpus), "organize.layout": "auto", "organize.n_jobs": 2, "organize.timeout_s": 20,
        "tokenize.n_jobs": 2, "tokenize.timeout_s": 20, "tokenize.rows_per_shard": 64,
    })
    tree_before = all_paths(base)
    procs = {}
    for stage in ("organize", "tokenize", "prepare"):
        procs[stage] = run_stage(root, stage, timeout=1200)  # generous: a hang fails here, not forever
        assert procs[stage].returncode == 0, (f"{stage} exited {procs[stage].returncode}\n"
                                              f"{procs[stage].stderr[-4000:]}")
    return {"corpus": corpus, "files": files, "kinds": kinds, "root": root, "base": base, "procs": procs,
            "corpus_before": corpus_before, "tree_before": tree_before}


def _organize_rows(run) -> list[dict]:
    return pq.read_table(run["root"] / "data" / "organized" / "manifest.parquet").to_pylist()


def _token_rows(run) -> list[dict]:
    return pq.read_table(run["root"] / "data" / "tokens" / "manifest.parquet").to_pylist()


def test_no_traceback_on_any_stage(fuzz_run):
    for stage, proc in fuzz_run["procs"].items():
        assert "Traceback" not in proc.stderr, f"{stage}:\n{proc.stderr[-4000:]}"


def test_every_input_file_is_in_exactly_one_bucket(fuzz_run):
    rows = _organize_rows(fuzz_run)
    corpus = fuzz_run["corpus"]
    sources = [_source_of(r["source_path"], corpus).resolve() for r in rows]
    counts = Counter(sources)
    assert not [s for s, c in counts.items() if c > 1], "an input file has more than one manifest row"
    expected = {p.resolve() for p in fuzz_run["files"]}
    missing = expected - set(sources)
    assert not missing, f"{len(missing)} input files are not in the manifest, e.g. {sorted(missing)[:3]}"
    extra = set(sources) - expected
    # Only the two stray non-MIDI files may be listed besides the .mid files, and then as rejected.
    assert extra <= {(corpus / "README.txt").resolve(), (corpus / "Bach" / "cover.png").resolve()}
    for row, src in zip(rows, sources):
        assert row["status"] in STATUSES, row
        if src in extra:
            assert row["status"] == "rejected", row


def test_rejections_and_duplicates_have_human_reasons(fuzz_run):
    rows = _organize_rows(fuzz_run)
    by_piece = {r["piece_id"]: r for r in rows if r["status"] == "accepted"}
    for r in rows:
        if r["status"] == "accepted":
            assert r["reason"] == "" and r["piece_id"] and r["out_path"], r
        elif r["status"] == "rejected":
            assert human_reason(r["reason"]), r
            assert r["piece_id"] == "" and r["out_path"] == "", r
        else:
            assert r["reason"].startswith("duplicate of "), r
            original = by_piece.get(r["reason"][len("duplicate of "):])
            assert original is not None, f"duplicate of a piece that was not accepted: {r}"
            assert original["content_hash"] == r["content_hash"] != "", r
    for r in _token_rows(fuzz_run):
        if r["status"] == "rejected":
            assert human_reason(r["reason"]), r


def test_accepted_files_are_copied_byte_for_byte_with_safe_names(fuzz_run):
    rows = _organize_rows(fuzz_run)
    organized = (fuzz_run["root"] / "data" / "organized").resolve()
    accepted = [r for r in rows if r["status"] == "accepted"]
    assert len({r["piece_id"] for r in accepted}) == len(accepted), "piece_id is not unique"
    assert len({r["out_path"] for r in accepted}) == len(accepted), "two accepted files share an output path"
    for r in accepted:
        out = (organized / r["out_path"]).resolve()
        assert out.is_relative_to(organized), f"output outside data/organized: {r['out_path']!r}"
        assert r["out_path"] == r["piece_id"] + ".mid", r
        assert not any(part.startswith(("-", ".")) or part.strip() != part for part in Path(r["out_path"]).parts), r
        assert out.read_bytes() == _source_of(r["source_path"], fuzz_run["corpus"]).read_bytes()
    on_disk = {str(p.relative_to(organized)) for p in organized.rglob("*") if p.is_file()}
    assert on_disk == {r["out_path"] for r in accepted} | {"manifest.parquet", "composers.json"}, \
        "stray files in data/organized"


def test_files_that_cannot_be_piano_music_are_rejected(fuzz_run):
    """Unreadable files never pass organize; files with no piano notes never reach the shards."""
    corpus = fuzz_run["corpus"]
    org = {_source_of(r["source_path"], corpus).resolve(): r for r in _organize_rows(fuzz_run)}
    tok = {r["piece_id"]: r for r in _token_rows(fuzz_run)}
    seen = Counter()
    for path, kind in fuzz_run["kinds"].items():
        row = org[path.resolve()]
        if kind in UNREADABLE:
            seen[kind] += 1
            assert row["status"] == "rejected", (kind, row)
        if kind in NO_PIANO_NOTES:
            seen[kind] += 1
            final = row["status"] if row["status"] != "accepted" else tok[row["piece_id"]]["status"]
            assert final == "rejected", (kind, row, tok.get(row["piece_id"]))
    assert set(seen) == UNREADABLE | NO_PIANO_NOTES  # the corpus really held each kind


def test_valid_pieces_survive(fuzz_run):
    corpus = fuzz_run["corpus"]
    org = {_source_of(r["source_path"], corpus).resolve(): r for r in _organize_rows(fuzz_run)}
    tok = {r["piece_id"]: r for r in _token_rows(fuzz_run)}
    lost = []
    for path, kind in fuzz_run["kinds"].items():
        if kind in {"valid", "valid_raw", "meter_7_8", "meter_5_4", "tempo_every_beat"}:
            row = org[path.resolve()]
            if row["status"] == "rejected" or (row["status"] == "accepted"
                                               and tok[row["piece_id"]]["status"] != "accepted"):
                lost.append((kind, str(path.relative_to(corpus)), row["reason"] or tok[row["piece_id"]]["reason"]))
    assert not lost, f"valid pieces were rejected: {lost[:5]}"


def test_tokenize_manifest_accounts_for_every_accepted_file(fuzz_run):
    accepted = {r["piece_id"] for r in _organize_rows(fuzz_run) if r["status"] == "accepted"}
    tok = _token_rows(fuzz_run)
    assert Counter(r["piece_id"] for r in tok) == Counter(accepted)
    assert {r["status"] for r in tok} <= {"accepted", "rejected"}
    ok = {r["piece_id"] for r in tok if r["status"] == "accepted"}
    shard_rows = []
    for shard in sorted((fuzz_run["root"] / "data" / "tokens").glob("shard-*.parquet")):
        shard_rows += pq.read_table(shard, columns=["piece_id", "transpose", "n_tokens"]).to_pylist()
    assert {r["piece_id"] for r in shard_rows} == ok
    keys = [(r["piece_id"], r["transpose"]) for r in shard_rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    n_by_piece = {r["piece_id"]: r["n_tokens"] for r in tok}
    assert all(r["n_tokens"] == n_by_piece[r["piece_id"]] > 0 for r in shard_rows if r["transpose"] == 0)


def test_data_metrics_add_up(fuzz_run):
    metrics = json.loads((fuzz_run["root"] / "metrics" / "data.json").read_text())
    org = Counter(r["status"] for r in _organize_rows(fuzz_run))
    tok = Counter(r["status"] for r in _token_rows(fuzz_run))
    assert metrics["files_in"] == sum(org.values()) >= N_FILES
    assert metrics["accepted"] + metrics["duplicates"] + metrics["rejected"] == metrics["files_in"]
    assert metrics["duplicates"] == org["duplicate"]
    assert metrics["accepted"] == tok["accepted"]
    assert metrics["rejected"] == org["rejected"] + tok["rejected"]
    if isinstance(metrics.get("rejected_list"), list):
        assert len(metrics["rejected_list"]) == metrics["rejected"]
    # The fuzz corpus really exercised every bucket.
    assert metrics["accepted"] >= 100 and metrics["duplicates"] >= 10 and metrics["rejected"] >= 50, metrics


def test_nothing_written_outside_the_outputs(fuzz_run):
    assert file_hashes(fuzz_run["corpus"]) == fuzz_run["corpus_before"], "the source corpus was modified"
    new = all_paths(fuzz_run["base"]) - fuzz_run["tree_before"]
    allowed = ("repo/data/organized", "repo/data/tokens", "repo/data/prepared", "repo/metrics/data.json")
    stray = sorted(p for p in new if not p.startswith(allowed))
    assert not stray, f"written outside the stage outputs: {stray[:10]}"
    leftovers = [p for p in (fuzz_run["root"] / "data").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_tokenize_alone_survives_every_fuzz_file(tmp_path):
    """Defence in depth: even if organize let every fuzz file through, tokenize rejects what it cannot encode, one
    reason per file, and never crashes or hangs."""
    corpus = tmp_path / "corpus"
    kinds: dict[Path, str] = {}
    files = make_fuzz_corpus(corpus, N_FILES, SEED + 1, kinds=kinds)
    root = make_repo_copy(tmp_path / "repo", {**FAST, "tokenize.n_jobs": 2, "tokenize.timeout_s": 20})
    write_organized(root / "data" / "organized", files, corpus)
    proc = run_stage(root, "tokenize", timeout=1200)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    rows = {r["piece_id"]: r for r in pq.read_table(root / "data" / "tokens" / "manifest.parquet").to_pylist()}
    assert len(rows) == len(files)
    bad = [(kinds[f], r["reason"]) for f in files
           for r in [rows[f.relative_to(corpus).with_suffix("").as_posix()]]
           if r["status"] == "rejected" and not human_reason(r["reason"])]
    assert not bad, f"rejections without a human reason: {bad[:5]}"
    for f in files:
        if kinds[f] in UNREADABLE | NO_PIANO_NOTES:
            assert rows[f.relative_to(corpus).with_suffix("").as_posix()]["status"] == "rejected", f


def test_generator_is_deterministic(tmp_path):
    a = make_fuzz_corpus(tmp_path / "a", 60, seed=5)
    b = make_fuzz_corpus(tmp_path / "b", 60, seed=5)
    c = make_fuzz_corpus(tmp_path / "c", 60, seed=6)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert [x.read_bytes() for x in a] != [z.read_bytes() for z in c]
