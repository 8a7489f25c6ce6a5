"""A full disk ends a stage with one clear line and exit 2, and leaves earlier outputs intact (issue #6).

In-process: writes that raise ENOSPC (monkeypatched) through mozart.infra.atomic and the tokenize stage's library function.
Subprocess: the stage scripts on a repo copy whose data/ is a small tmpfs that is filled up (needs root and mount
rights; skipped with the reason otherwise).
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fuzz_midi import make_valid_corpus
from mozart.infra import atomic
from mozart.errors import MozartError
from stage_helpers import (FAST, assert_one_line_error, file_hashes, make_repo_copy, run_stage, set_params,
                           write_organized)


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ---------------------------------------------------------------------------------------------------- mozart.infra.atomic

def test_atomic_file_write_on_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    atomic.write_json(path, {"old": True})
    old = path.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    with pytest.raises(MozartError, match="no space left") as err:
        atomic.write_bytes(path, b"new")
    assert str(path) in str(err.value)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["out.json"], "a temporary file was left behind"


def test_atomic_dir_on_full_disk_keeps_the_old_folder(tmp_path):
    out = tmp_path / "tokens"
    with atomic.atomic_dir(out) as tmp:
        (tmp / "a.parquet").write_bytes(b"old")
    with pytest.raises(MozartError, match="no space left"):
        with atomic.atomic_dir(out) as tmp:
            (tmp / "a.parquet").write_bytes(b"partial")
            _enospc()
    assert (out / "a.parquet").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["tokens"], "a temporary folder was left behind"


@pytest.mark.parametrize("which", ["mkstemp", "mkdtemp"])
def test_atomic_full_disk_while_creating_the_temporary_is_a_clear_error(tmp_path, monkeypatch, which):
    """On a full ext4 disk even creating the temporary file/folder fails with ENOSPC: still one clear MozartError."""
    path = tmp_path / "out"
    monkeypatch.setattr(tempfile, which, _enospc)
    with pytest.raises(MozartError, match="no space left"):
        if which == "mkstemp":
            atomic.write_bytes(path, b"x")
        else:
            with atomic.atomic_dir(path):
                pass
    assert not path.exists()


# ------------------------------------------------------------------------------------------ tokenize, in-process

def test_tokenize_on_full_disk_keeps_the_old_tokens(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from mozart.config import TokenizeConfig
    from mozart.data.tokenize import tokenize_corpus

    corpus = tmp_path / "corpus"
    files = make_valid_corpus(corpus, ["Bach", "Chopin"], 3, seed=1, n_notes=(40, 80))
    organized = write_organized(tmp_path / "data" / "organized", files, corpus)
    tokens = tmp_path / "data" / "tokens"
    cfg = TokenizeConfig(n_jobs=1, rows_per_shard=2, timeout_s=60)
    tokenize_corpus(organized, tokens, cfg, progress=False)
    old = file_hashes(tokens)
    assert any(k.startswith("shard-") for k in old)

    real_write = pq.write_table
    calls = []

    def write_then_fill(*args, **kwargs):  # the first shard fits, the second finds the disk full
        calls.append(1)
        if len(calls) >= 2:
            _enospc()
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_then_fill)
    with pytest.raises(MozartError, match="no space left"):
        tokenize_corpus(organized, tokens, TokenizeConfig(n_jobs=1, rows_per_shard=1, timeout_s=60), progress=False)
    assert len(calls) >= 2
    assert file_hashes(tokens) == old
    assert sorted(os.listdir(tmp_path / "data")) == ["organized", "tokens"], "a temporary folder was left behind"


# ----------------------------------------------------------------------------------- stage scripts on a small tmpfs

@pytest.fixture
def small_disk(tmp_path):
    """A repo copy whose data/ is an 8 MB tmpfs; yields (root, fill) where fill() leaves ~4 kB free."""
    root = make_repo_copy(tmp_path / "repo", FAST)
    data = root / "data"
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to simulate a full disk needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): full-disk subprocess test skipped")
    filler = data / "filler.bin"

    def fill(leave: int = 4096) -> None:
        filler.unlink(missing_ok=True)
        free = shutil.disk_usage(data).free
        with open(filler, "wb") as f:
            f.truncate(0)
            block = b"\0" * 65536
            remaining = max(0, free - leave)
            while remaining > 0:
                try:
                    f.write(block[:min(len(block), remaining)])
                    f.flush()
                except OSError:
                    break
                remaining -= len(block)

    try:
        yield root, fill, filler
    finally:
        if subprocess.run(["umount", str(data)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(data)], capture_output=True)


@pytest.mark.parametrize("stage", ["organize", "tokenize", "prepare"])
def test_stage_on_a_full_disk(small_disk, tmp_path, stage):
    root, fill, filler = small_disk
    corpus = tmp_path / "corpus"
    make_valid_corpus(corpus, ["Bach", "Chopin", "Liszt"], 4, seed=2, n_notes=(100, 200))
    set_params(root, {"organize.source": str(corpus), "prepare.min_pieces": 2})
    for s in ("organize", "tokenize", "prepare"):
        run_stage(root, s, timeout=600, check=True)

    def outputs() -> dict[str, str]:
        found = {f"data/{k}": v for k, v in file_hashes(root / "data").items() if k != "filler.bin"}
        found.update({f"metrics/{k}": v for k, v in file_hashes(root / "metrics").items()})
        return found

    before = outputs()
    fill()
    proc = run_stage(root, stage, timeout=600)
    assert_one_line_error(proc, "space")
    assert outputs() == before, "earlier outputs changed, or a temporary file was left on the full disk"
    assert sorted(os.listdir(root / "data")) == ["filler.bin", "organized", "prepared", "tokens"]

    filler.unlink()  # space freed: the same command now succeeds and gives the same outputs
    run_stage(root, stage, timeout=600, check=True)
    assert outputs() == before
