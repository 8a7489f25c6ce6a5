"""The tiny pipeline logging to a real `mlflow server` (SQLite backend, artifacts proxied through the server), read
back through the MLflow client: the team set-up of the README's "One MLflow server for a whole lab".

The server runs on 127.0.0.1 on a free port, in its own process group and temporary folder; it is stopped and the
folder removed whatever happens, and the tests check that nothing of it is left.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from stage_helpers import STAGES, processes_under, tiny_project

pytestmark = pytest.mark.slow

EXPERIMENT_RUN = "hot-sample"  # the `dvc exp run -n` name of the second pipeline execution


@dataclasses.dataclass(frozen=True)
class Server:
    uri: str
    port: int
    folder: Path  # holds the SQLite store and the artifact root
    pgid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group `pgid`."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (uvicorn and its workers), SIGKILL what is left after 15 s."""
    for sig, grace_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
            if proc.poll() is not None and not _group_members(proc.pid):
                return


@contextlib.contextmanager
def mlflow_server() -> Iterator[Server]:
    """A running `mlflow server` on 127.0.0.1: SQLite store and artifact root in a fresh temporary folder,
    `--serve-artifacts` (clients upload through the server). Stopped, and its folder removed, on exit."""
    folder = Path(tempfile.mkdtemp(prefix="mozart-mlflow-"))
    proc = None
    try:
        port = _free_port()
        log = folder / "server.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runners
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                 "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                 "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts", "--workers", "1"],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        _wait_healthy(uri, proc, log)
        yield Server(uri, port, folder, proc.pid)
    finally:
        if proc is not None:
            _stop_group(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _assert_gone(server: Server) -> None:
    assert not _group_members(server.pgid), [p.cmdline() for p in _group_members(server.pgid)]
    assert not _port_open(server.port)
    assert not server.folder.exists()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The tiny pipeline run with `dvc repro`, then a `dvc exp run -S sample.temperature=...`, both logging to one
    server; yields (server, project, client) while the server runs, then checks the server is gone."""
    import mlflow

    with mlflow_server() as server:
        project = tiny_project(tmp_path_factory.mktemp("mlflow"), {"MLFLOW_TRACKING_URI": server.uri})
        project.dvc("repro")
        project.commit("tiny pipeline trained")
        project.page_of_repro = (project.root / "reports" / "index.html").read_bytes()  # the experiment redoes it
        project.exp_output = project.dvc("exp", "run", "-n", EXPERIMENT_RUN, "-S", "sample.temperature=1.6")
        yield server, project, mlflow.MlflowClient(tracking_uri=server.uri)
    _assert_gone(server)
    assert processes_under(project.root) == []


def _runs(client) -> dict[str, object]:
    """'repro' and 'exp' -> the run of each pipeline execution (fails unless there are exactly those two)."""
    experiment = client.get_experiment_by_name("mozart")
    runs = client.search_runs([experiment.experiment_id])
    by_kind = {("exp" if "dvc_experiment" in r.data.tags else "repro"): r for r in runs}
    assert len(runs) == 2 and set(by_kind) == {"repro", "exp"}, [(r.info.run_name, r.data.tags) for r in runs]
    return by_kind


def _logged_models(client) -> list:
    return list(client.search_logged_models([client.get_experiment_by_name("mozart").experiment_id]))


def _stages(run) -> set[str]:
    return {s for s in STAGES if run.data.tags.get(f"mozart.stage.{s}") == "ran"}


def test_the_server_is_stopped_and_its_folder_removed_even_when_the_code_using_it_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with mlflow_server() as server:
            assert _port_open(server.port) and server.folder.is_dir() and _group_members(server.pgid)
            raise RuntimeError("boom")
    _assert_gone(server)


def test_one_pipeline_run_is_one_server_run_with_every_stage_and_its_params(tracked):
    _, _, client = tracked
    run = _runs(client)["repro"]
    assert _stages(run) == set(STAGES)
    params = run.data.params
    assert (params["model.d_model"], params["train.max_steps"], params["sample.temperature"]) == ("32", "24", "1.0")
    assert run.data.metrics["data.files_in"] == 15


def test_training_loss_is_logged_per_step_to_the_server(tracked):
    _, project, client = tracked
    run = _runs(client)["repro"]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(steps) >= 2 and steps == sorted(steps) and len(set(steps)) == len(steps), steps
    train_json = json.loads((project.root / "metrics" / "train.json").read_text())
    assert run.data.metrics["final_val_loss"] == pytest.approx(train_json["val_loss"])


def test_model_samples_and_listening_page_are_uploaded_through_the_server(tracked, tmp_path):
    server, project, client = tracked
    run_id = _runs(client)["repro"].info.run_id
    [model] = _logged_models(client)  # the model is a LoggedModel of the run (the Models view), not run artifacts
    assert model.source_run_id == run_id and str(model.status) == "READY"
    model_files = {Path(a.path).name for a in client.list_logged_model_artifacts(model.model_id)}
    assert model_files == {"config.json", "model.safetensors", "tokenizer.json", "composers.json"}
    samples = client.download_artifacts(run_id, "samples", str(tmp_path))
    assert list(Path(samples).rglob("*.mid")), "no MIDI among the sample artifacts"
    page = client.download_artifacts(run_id, "reports/index.html", str(tmp_path))
    assert Path(page).read_bytes() == project.page_of_repro
    # proxied: the bytes sit in the server's artifact root, and nothing was logged beside the project
    assert list((server.folder / "artifacts").rglob("model.safetensors"))
    assert not any((project.root / name).exists() for name in ("mlflow.db", "mlruns", "mlartifacts"))


def test_a_dvc_experiment_is_a_second_run_named_after_the_experiment(tracked):
    _, project, client = tracked
    runs = _runs(client)
    exp = runs["exp"]
    assert exp.info.run_name == EXPERIMENT_RUN and exp.data.tags["dvc_experiment"] == EXPERIMENT_RUN
    assert _stages(exp) == {"sample", "evaluate", "render"}, exp.data.tags  # train, etc. were cached
    assert exp.data.params["sample.temperature"] == "1.6"
    assert "generated.gs" in exp.data.metrics
    assert exp.info.run_id != runs["repro"].info.run_id


def test_the_experiments_evaluate_metrics_attach_to_the_model_the_first_run_trained(tracked):
    """The experiment reran evaluate without train, in another run: its metrics still land on the one model."""
    _, project, client = tracked
    runs = _runs(client)
    [model] = _logged_models(client)
    runs_by_metric: dict[str, set[str]] = {}
    for metric in model.metrics:
        runs_by_metric.setdefault(metric.key, set()).add(metric.run_id)
    assert runs_by_metric["val_bits_per_token"] == {runs["repro"].info.run_id}
    assert runs_by_metric["test_bits_per_token"] == {runs["repro"].info.run_id, runs["exp"].info.run_id}
