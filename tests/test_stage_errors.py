"""User errors end a stage with one clear `error:` line, exit code 2, no traceback, and leave earlier outputs intact
(issue #6): a missing source folder, an empty corpus, a corpus with nothing readable, a corpus whose composers all
have fewer than `prepare.min_pieces` pieces, a missing upstream output, a missing soundfont."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz_midi import make_fuzz_corpus, make_valid_corpus
from stage_helpers import FAST, assert_one_line_error, file_hashes, make_repo_copy, run_stage, set_params


def _outputs(root: Path) -> dict[str, str]:
    """Hashes of every file under data/, metrics/ and reports/: what a failed stage must leave untouched."""
    out = {}
    for folder in ("data", "metrics", "reports"):
        out.update({f"{folder}/{k}": v for k, v in file_hashes(root / folder).items()})
    return out


@pytest.fixture(scope="module")
def prepared_repo(tmp_path_factory):
    """A repo copy where organize, tokenize and prepare succeeded on a small clean corpus (3 composers x 6)."""
    base = tmp_path_factory.mktemp("errors")
    corpus = base / "corpus"
    make_valid_corpus(corpus, ["Bach", "Chopin", "Liszt"], 6, seed=9, n_notes=(40, 90))
    root = make_repo_copy(base / "repo", {**FAST, "organize.source": str(corpus), "prepare.min_pieces": 2})
    for stage in ("organize", "tokenize", "prepare"):
        run_stage(root, stage, timeout=600, check=True)
    return root


@pytest.fixture
def repo(prepared_repo, tmp_path):
    """A private copy of `prepared_repo` (tests change params and must not affect each other)."""
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(prepared_repo, root, symlinks=True)
    return root


def _fails_cleanly(root: Path, stage: str, *needles: str) -> str:
    before = _outputs(root)
    proc = run_stage(root, stage, timeout=600)
    line = assert_one_line_error(proc, *needles)
    assert _outputs(root) == before, f"{stage} failed but changed earlier outputs"
    leftovers = [p.name for p in (root / "data").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"{stage} left temporary files: {leftovers}"
    return line


def test_missing_source_folder(repo, tmp_path):
    missing = tmp_path / "no such corpus"
    set_params(repo, {"organize.source": str(missing)})
    _fails_cleanly(repo, "organize", str(missing))


def test_source_is_a_file_not_a_folder(repo, tmp_path):
    a_file = tmp_path / "corpus.mid"
    a_file.write_bytes(b"MThd")
    set_params(repo, {"organize.source": str(a_file)})
    _fails_cleanly(repo, "organize", str(a_file))


def test_empty_corpus(repo, tmp_path):
    empty = tmp_path / "empty corpus"
    (empty / "Bach").mkdir(parents=True)
    (empty / "Bach" / "notes.txt").write_text("no MIDI here\n")
    set_params(repo, {"organize.source": str(empty)})
    _fails_cleanly(repo, "organize", "midi")


def test_corpus_with_nothing_readable_stops_with_one_line(repo, tmp_path):
    """Only malformed files: some stage (organize or tokenize) must stop the pipeline, clearly, before prepare."""
    junk = tmp_path / "junk"
    kinds: dict[Path, str] = {}
    make_fuzz_corpus(junk, 80, seed=1, kinds=kinds)
    for path, kind in kinds.items():  # keep only files no parser can read
        if kind not in {"zero_length", "text", "png", "garbage", "endless_vlq", "no_status", "mthd_then_garbage",
                        "zero_tracks", "header_only", "empty_tracks", "drums_only"}:
            path.unlink()
    assert sum(1 for p in junk.rglob("*.mid")) >= 20
    set_params(repo, {"organize.source": str(junk)})
    before = _outputs(repo)
    for stage in ("organize", "tokenize", "prepare"):
        proc = run_stage(repo, stage, timeout=600)
        if proc.returncode != 0:
            assert_one_line_error(proc)
            break
    else:
        pytest.fail("organize, tokenize and prepare all succeeded on a corpus with no readable MIDI file")
    if stage == "organize":
        assert _outputs(repo) == before


def test_all_composers_below_min_pieces(repo):
    """Issue #6: a corpus whose composers all have fewer than prepare.min_pieces pieces is an error, not a model
    with only the OTHER class."""
    set_params(repo, {"prepare.min_pieces": 1000})
    _fails_cleanly(repo, "prepare", "min_pieces")


def test_tokenize_without_organize_output(repo):
    import shutil

    shutil.rmtree(repo / "data" / "organized")
    _fails_cleanly(repo, "tokenize", "organize")


def test_prepare_without_tokens(repo):
    import shutil

    shutil.rmtree(repo / "data" / "tokens")
    _fails_cleanly(repo, "prepare", "tokenize")


def test_rerun_after_errors_still_works(repo):
    """After a failed run the same stage succeeds again once the cause is fixed (no stale lock or temp state)."""
    set_params(repo, {"prepare.min_pieces": 1000})
    assert run_stage(repo, "prepare", timeout=600).returncode == 2
    set_params(repo, {"prepare.min_pieces": 2})
    run_stage(repo, "prepare", timeout=600, check=True)
    meta = json.loads((repo / "metrics" / "data.json").read_text())
    assert meta["accepted"] + meta["duplicates"] + meta["rejected"] == meta["files_in"]


# ----------------------------------------------------------------------------------------------------------- render

def test_render_wav_missing_soundfont_is_a_mozart_error(tmp_path):
    from mozart.errors import MozartError
    from mozart.report.render import render_wav

    midi = make_valid_corpus(tmp_path / "m", ["X"], 1, seed=1, n_notes=(5, 10))[0]
    missing = tmp_path / "nope" / "piano.sf2"
    wav = tmp_path / "out.wav"
    with pytest.raises(MozartError) as err:
        render_wav(midi, wav, soundfont=missing)
    assert str(missing) in str(err.value) and "render.soundfont" in str(err.value)
    assert not wav.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_render_stage_missing_soundfont(tmp_path, repo_root):
    if not (repo_root / "stages" / "render.py").is_file():
        pytest.fail("stages/render.py does not exist yet")
    root = make_repo_copy(tmp_path / "repo")
    midi = make_valid_corpus(tmp_path / "m", ["X"], 1, seed=1, n_notes=(5, 10))[0]
    samples = root / "data" / "samples"
    samples.mkdir(parents=True)
    (samples / "s0.mid").write_bytes(midi.read_bytes())
    (samples / "manifest.json").write_text(json.dumps({"settings": {}, "samples": [{
        "id": "s0", "kind": "free", "composer": "X", "composer_id": 1, "cfg_scale": 1.0, "temperature": 1.0,
        "top_k": 0, "top_p": 0.95, "repetition_penalty": 1.1, "bpm": 120, "n_bars": 4, "n_tokens": 10,
        "seconds": 1.0, "decodable": True, "path": "s0.mid", "token_ids": [], "prompt_piece_id": None,
        "prompt_bars": None}]}))
    (root / "metrics" / "eval.json").write_text("{}\n")
    (root / "metrics" / "sample.json").write_text("{}\n")
    (root / "reports").mkdir()
    (root / "reports" / "index.html").write_text("<p>earlier report</p>\n")
    missing = tmp_path / "no" / "FluidR3_GM.sf2"
    set_params(root, {"render.soundfont": str(missing)})
    before = _outputs(root)
    proc = run_stage(root, "render", timeout=600)
    assert_one_line_error(proc, str(missing))
    assert _outputs(root) == before
