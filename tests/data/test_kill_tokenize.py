"""SIGKILL the tokenize stage mid-run: data/tokens holds the old complete output or none, never a half-written one,
and a rerun produces shards byte-identical to an uninterrupted run (issue #6)."""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from stage_helpers import FAST, corpus_from_shared, file_hashes, make_repo_copy, run_stage, set_params, start_stage

pytestmark = [pytest.mark.slow, pytest.mark.shared]

PARAMS = {**FAST, "tokenize.rows_per_shard": 4, "tokenize.transpose": [-1, 1]}


@pytest.fixture(scope="module")
def organized(tmp_path_factory):
    """A repo copy whose data/organized holds 40 piano-midi-de files, plus the hashes of an uninterrupted tokenize."""
    corpora = Path(__file__).resolve().parents[3] / "shared" / "corpora"  # as in conftest.shared_corpora
    if not corpora.is_dir():
        pytest.skip(f"{corpora} is absent: the shared corpora are only beside developer and CI checkouts")
    base = tmp_path_factory.mktemp("kill")
    corpus = corpus_from_shared(corpora, base / "corpus", 40, per_composer=4)
    ref = make_repo_copy(base / "reference", {**PARAMS, "organize.source": str(corpus)})
    run_stage(ref, "organize", timeout=600, check=True)
    run_stage(ref, "tokenize", timeout=600, check=True)
    reference = file_hashes(ref / "data" / "tokens")
    assert any(name.startswith("shard-") for name in reference)
    return ref, reference


def _fresh_copy(tmp_path: Path, ref: Path) -> Path:
    root = make_repo_copy(tmp_path / "repo", PARAMS)
    shutil.copyfile(ref / "params.yaml", root / "params.yaml")
    shutil.copytree(ref / "data" / "organized", root / "data" / "organized")
    return root


def _temp_dirs(data: Path) -> list[Path]:
    return [p for p in data.iterdir() if p.is_dir() and p.name.startswith(".tokens.")]


def _kill_when(root: Path, min_shards: int, deadline_s: float = 300) -> None:
    """Start tokenize; SIGKILL its whole process group once its temp dir holds `min_shards` shard files."""
    data = root / "data"
    log = root / "kill.log"
    stale = set(_temp_dirs(data))  # left by an earlier killed run: not this run's
    proc = start_stage(root, "tokenize", log)
    t_end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < t_end:
            if proc.poll() is not None:
                pytest.fail(f"tokenize finished (exit {proc.returncode}) before it could be killed; "
                            f"the corpus is too small for this machine\n{log.read_text()[-2000:]}")
            tmps = [p for p in _temp_dirs(data) if p not in stale]
            if tmps and sum(1 for _ in tmps[0].glob("shard-*.parquet")) >= min_shards:
                break
            time.sleep(0.01)
        else:
            pytest.fail("tokenize never created its temporary output folder")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_kill_with_no_previous_output_leaves_none(tmp_path, organized):
    ref, reference = organized
    root = _fresh_copy(tmp_path, ref)
    _kill_when(root, min_shards=0)  # as soon as the temporary folder appears
    tokens = root / "data" / "tokens"
    assert not tokens.exists(), f"a killed run left a visible output: {sorted(os.listdir(tokens))}"
    # Whatever the killed run left is hidden (a dot-folder), never a shard at a path readers look at.
    assert not list((root / "data").glob("shard-*")) and not list((root / "data").glob("tokens*"))

    run_stage(root, "tokenize", timeout=600, check=True)
    assert file_hashes(tokens) == reference


def test_kill_mid_write_keeps_the_old_complete_output(tmp_path, organized):
    ref, reference = organized
    root = _fresh_copy(tmp_path, ref)
    # The "old" output: a complete run with other shard sizes, so old and new files differ byte for byte.
    set_params(root, {"tokenize.rows_per_shard": 7})
    run_stage(root, "tokenize", timeout=600, check=True)
    tokens = root / "data" / "tokens"
    old = file_hashes(tokens)
    assert old and old != reference

    set_params(root, {"tokenize.rows_per_shard": 4})
    _kill_when(root, min_shards=2)  # while shards of the new output are being written
    assert file_hashes(tokens) == old, "the old output was modified or partly replaced by a killed run"

    run_stage(root, "tokenize", timeout=600, check=True)
    assert file_hashes(tokens) == reference, "the rerun after a kill differs from an uninterrupted run"
