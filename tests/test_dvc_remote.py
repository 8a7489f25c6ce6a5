"""Sharing a trained pipeline through a DVC remote, end to end, as the README's "Share a trained pipeline" says.

One module-scoped run: a temporary git copy runs the tiny pipeline, commits `dvc.lock` with `params.yaml` and
`metrics/`, and `dvc push`es to a local-directory remote; a fresh `git clone` of it, with the same remote, only runs
`dvc pull`. The tests then check that the clone has nothing to reproduce and serves the pulled model.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import symusic

from stage_helpers import STAGES, TINY_COMPOSERS, Project, git, processes_under, ran, tiny_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """The trained original, the remote it pushed to, and a clone that pulled from it (each command's output)."""
    base = tmp_path_factory.mktemp("remote")
    no_tracking = {"MOZART_TRACKING": "0"}  # MLflow is not what is shared here
    original = tiny_project(base, no_tracking)
    remote = base / "dvc-remote"
    out = {"remote_add": original.dvc("remote", "add", "-d", "lab", str(remote))}
    out["repro"] = original.dvc("repro")
    tracked_before = set(git(original.root, "ls-files").split())
    git(original.root, "add", "dvc.lock", "params.yaml", "metrics", ".dvc/config")
    git(original.root, "commit", "-q", "-m", "tiny pipeline trained")
    out["committed"] = set(git(original.root, "ls-files").split()) - tracked_before
    out["left_uncommitted"] = git(original.root, "status", "--porcelain")
    out["push"] = original.dvc("push")

    clone = Project(base / "clone", no_tracking)
    git(base, "clone", "-q", str(original.root), str(clone.root))
    out["clone_files_before_pull"] = sorted(str(p.relative_to(clone.root)) for p in clone.root.rglob("*")
                                            if p.is_file() and ".git" not in p.parts)
    out["pull"] = clone.dvc("pull")
    out["status"] = clone.dvc("status")
    out["repro_again"] = clone.dvc("repro")
    out["composers"] = clone.mozart("composers")
    out["generate"] = clone.mozart("generate", "--composer", "bach", "--bars", "2", "--seed", "0",
                                   "--out", "bach.mid")
    return {"base": base, "original": original, "clone": clone, "remote": remote, "out": out}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dvc_lock_is_committed_and_push_fills_the_remote(shared):
    out = shared["out"]
    assert ran(out["repro"]) == set(STAGES)
    assert "dvc.lock" in out["committed"], out["committed"]
    assert out["left_uncommitted"] == "", out["left_uncommitted"]  # the README's list is all there is to commit
    pushed = re.search(r"(\d+) files? pushed", out["push"])
    assert pushed and int(pushed.group(1)) > 0, out["push"]
    assert any(p.is_file() for p in shared["remote"].rglob("*"))


def test_a_fresh_clone_has_no_outputs_until_dvc_pull(shared):
    before = shared["out"]["clone_files_before_pull"]
    assert "dvc.lock" in before
    # models/base/README.md is git's: the placeholder of the fine-tuning base (a train dep, never an output)
    outputs = [f for f in before if f.startswith(("models/", "data/", "reports/")) and not f.startswith("models/base/")]
    assert outputs == [], outputs
    pulled = shared["clone"].root / "models" / "final" / "model.safetensors"
    assert _digest(pulled) == _digest(shared["original"].root / "models" / "final" / "model.safetensors")


def test_after_dvc_pull_status_is_up_to_date_and_repro_reproduces_nothing(shared):
    out = shared["out"]
    assert "Data and pipelines are up to date" in out["status"], out["status"]
    assert ran(out["repro_again"]) == set(), out["repro_again"]
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in out["repro_again"], out["repro_again"]
    assert not (shared["clone"].root / "models" / "checkpoints").exists()  # nothing was trained in the clone


def test_the_clone_lists_the_trained_composers(shared):
    listed = shared["out"]["composers"]
    names = json.loads((shared["clone"].root / "models" / "final" / "composers.json").read_text())["names"]
    for composer in TINY_COMPOSERS:
        assert composer in listed and composer in names, listed


def test_the_clone_generates_a_midi_from_the_pulled_model(shared):
    piece = shared["clone"].root / "bach.mid"
    assert "Bach" in shared["out"]["generate"], shared["out"]["generate"]
    assert symusic.Score(str(piece)).note_num() > 0


def test_nothing_is_left_running_in_either_checkout(shared):
    assert processes_under(shared["base"]) == []
