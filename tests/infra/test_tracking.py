"""Issue 16, point 4: an unreachable or silent MLflow tracking server costs seconds, not minutes.

The stage goes on with one warning, or (MOZART_TRACKING_REQUIRED=1) stops with one error line.
"""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from mozart.errors import MozartError
from mozart.infra import tracking
from organize_helpers import write_fake_pipeline
from stage_helpers import make_repo_copy, stage_cmd, stage_env

DEAD_URI = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connect is refused at once


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections (the kernel's backlog does) but never answers a request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    server.close()


def test_an_unreachable_server_gives_one_warning_and_an_untracked_stage(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD_URI)
    monkeypatch.delenv("MOZART_TRACKING", raising=False)
    monkeypatch.delenv("MOZART_TRACKING_REQUIRED", raising=False)
    start = time.monotonic()
    with tracking.stage_run("prepare", {"seed": 1}, tmp_path) as run:
        run.log_metrics({"x": 1.0})
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: MLflow tracking is off")]
    assert len(warnings) == 1 and "127.0.0.1:9" in warnings[0], err


def test_required_tracking_turns_an_unreachable_server_into_one_error_line(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD_URI)
    monkeypatch.setenv("MOZART_TRACKING_REQUIRED", "1")
    monkeypatch.delenv("MOZART_TRACKING", raising=False)
    with pytest.raises(MozartError, match="MOZART_TRACKING_REQUIRED") as info:
        with tracking.stage_run("prepare", {"seed": 1}, tmp_path):
            pass
    assert "\n" not in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_a_server_that_never_answers_times_out_within_about_ten_seconds(monkeypatch, capsys, tmp_path,
                                                                          silent_server):
    for name in (*tracking.MLFLOW_HTTP_DEFAULTS, "MOZART_TRACKING", "MOZART_TRACKING_REQUIRED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", silent_server)
    start = time.monotonic()
    with tracking.stage_run("prepare", {"seed": 1}, tmp_path) as run:
        run.log_metrics({"x": 1.0})
    waited = time.monotonic() - start
    assert waited < 25, f"waited {waited:.0f} s (MLflow's own defaults wait ~4 minutes)"
    assert capsys.readouterr().err.count("warning: MLflow tracking is off") == 1


class _FlakyMlflow:
    """Stands in for the mlflow module: every call fails, as when the server dies mid-stage."""

    def __init__(self):
        self.calls = 0

    def log_metrics(self, *args, **kwargs):
        self.calls += 1
        raise ConnectionError("connection refused")


def test_a_server_that_dies_mid_stage_turns_tracking_off_after_one_warning(monkeypatch, capsys):
    monkeypatch.delenv("MOZART_TRACKING_REQUIRED", raising=False)
    fake = _FlakyMlflow()
    run = tracking.StageRun(fake, "train", "run-id", DEAD_URI)
    for step in range(5):
        run.log_metrics({"loss": 1.0}, step=step)
    assert fake.calls == 1  # later calls do not wait for the dead server again
    assert capsys.readouterr().err.count("warning: MLflow tracking is off") == 1


def test_a_failing_call_on_a_live_local_store_only_warns_and_keeps_tracking(monkeypatch):
    monkeypatch.delenv("MOZART_TRACKING_REQUIRED", raising=False)
    fake = _FlakyMlflow()
    run = tracking.StageRun(fake, "train", "run-id", "sqlite:///mlflow.db")
    with pytest.warns(UserWarning, match="MLflow log_metrics failed"):
        run.log_metrics({"loss": 1.0})
        run.log_metrics({"loss": 2.0})
    assert fake.calls == 2


def _timed_prepare(root: Path, **env: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    proc = subprocess.run(stage_cmd(root, "prepare"), cwd=root, env={**stage_env(root), **env},
                          capture_output=True, text=True, timeout=600)
    return time.monotonic() - start, proc


def test_prepare_with_an_unreachable_tracking_server_takes_its_normal_time(tmp_path):
    """The issue's acceptance: `MLFLOW_TRACKING_URI=http://127.0.0.1:9/ python stages/prepare.py` finishes within
    20 s of its normal (untracked) time, with one warning."""
    root = make_repo_copy(tmp_path / "repo")
    pieces = [(f"{c}/w{i}", c, f"{c}/w{i}") for c in ("Bach", "Chopin") for i in range(6)]
    write_fake_pipeline(root / "data", pieces)
    normal, proc = _timed_prepare(root)
    assert proc.returncode == 0, proc.stderr
    dead, proc = _timed_prepare(root, MOZART_TRACKING="1", MLFLOW_TRACKING_URI=DEAD_URI)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning: MLflow tracking is off") == 1, proc.stderr
    assert dead - normal < 20, f"normal {normal:.1f} s, with a dead tracking server {dead:.1f} s"
