"""MLflow tracking: the one place that talks to MLflow.

Every stage of one pipeline execution logs into the same MLflow run, found by the tag `mozart.pipeline_key`: the DVC
experiment name when DVC sets one, else a hash of the full params and the git revision. So after `dvc repro` (or
`dvc exp run`) one run holds the params, metrics and artifacts of every stage that ran; under `dvc exp run` the run
is named after the experiment, as `dvc exp show` lists it.

The tracking URI defaults to `sqlite:///<repo root>/mlflow.db` (the real repo root even inside the temporary copy that
`dvc exp run --temp` uses); `MLFLOW_TRACKING_URI` overrides it. Tracking never stops the pipeline: if the server is
unreachable, one warning is printed and the stage goes on untracked.

Faults fail fast: before MLflow is imported, an http(s) tracking server gets a TCP connect of at most
CONNECT_TIMEOUT_S; MLflow's own HTTP requests are capped at 10 s without retries (MLFLOW_HTTP_REQUEST_TIMEOUT = 10,
MLFLOW_HTTP_REQUEST_MAX_RETRIES = 0 unless set in the environment; MLflow's defaults retry for ~4 minutes); and a
call that fails because the server went away or stopped answering turns tracking off for the rest of the stage, so a
dead server costs seconds, not minutes. `MOZART_TRACKING_REQUIRED=1` makes any of these a one-line error instead (exit code 2);
`MOZART_TRACKING=0` switches tracking off.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

EXPERIMENT = "mozart"
KEY_TAG = "mozart.pipeline_key"
CONNECT_TIMEOUT_S = 5.0
# MLflow's own defaults (120 s timeout, 7 retries with exponential backoff) wait ~4 minutes for a dead server
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
T = TypeVar("T")


def real_repo_root(repo_root: Path) -> Path:
    """The user's repository, also when DVC runs us in `<repo>/.dvc/tmp/exps/<id>/` (a temporary copy)."""
    parts = Path(repo_root).resolve().parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return Path(repo_root).resolve()


def tracking_uri(repo_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{real_repo_root(repo_root) / 'mlflow.db'}"


def tracking_required() -> bool:
    return os.environ.get("MOZART_TRACKING_REQUIRED", "0").strip().lower() in ("1", "true", "yes")


def unreachable_reason(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why an http(s) tracking server cannot be reached (one TCP connect, at most `timeout_s`); None when it can,
    or when the URI is not a network one (sqlite, file, databricks)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"bad port in {uri} ({exc})"
    if not parts.hostname:
        return f"no host in {uri}"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:  # refused, timed out, unknown host
        return f"{uri} is unreachable ({type(exc).__name__}: {exc or 'timed out'})"


def _tracking_failed(message: str) -> None:
    """One warning, or (MOZART_TRACKING_REQUIRED=1) one error line."""
    from mozart.errors import MozartError

    message = " ".join(message.split())[:500]  # MLflow's messages span lines; ours is one
    if tracking_required():
        raise MozartError(f"MLflow tracking failed: {message} (MOZART_TRACKING_REQUIRED=1 makes this an error; "
                          "fix MLFLOW_TRACKING_URI or unset MOZART_TRACKING_REQUIRED)")
    print(f"warning: MLflow tracking is off for this stage ({message})", file=sys.stderr)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': '0.001'}; lists become JSON strings."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def git_revision(repo_root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def pipeline_key(params: Mapping[str, Any], repo_root: Path) -> str:
    exp = os.environ.get("DVC_EXP_NAME")
    if exp:
        return f"exp:{exp}"
    blob = json.dumps(params, sort_keys=True, default=str) + (git_revision(repo_root) or "")
    return "params:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


class StageRun:
    """A handle on the pipeline's MLflow run; methods are no-ops when tracking is off."""

    def __init__(self, mlflow_module: Any | None, stage: str, run_id: str | None = None, uri: str = ""):
        self._mlflow = mlflow_module
        self.stage = stage
        self.run_id = run_id
        self.uri = uri

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def attempt(self, what: str, action: Callable[[Any], T]) -> T | None:
        """`action(mlflow)` under the stage's fault rules: its result, or None when tracking is off or it failed."""
        if self._mlflow is None:
            return None
        start = time.monotonic()
        try:
            return action(self._mlflow)
        except Exception as exc:  # tracking must never kill a multi-hour run
            waited = time.monotonic() - start
            gone = unreachable_reason(self.uri) or (
                f"MLflow {what} waited {waited:.0f} s and failed ({type(exc).__name__})"
                if waited >= CONNECT_TIMEOUT_S else None)
            if gone is None and not tracking_required():
                warnings.warn(f"MLflow {what} failed: {exc}", stacklevel=3)
                return None
            self._mlflow = None  # the server went away: every further call would wait for its timeouts again
            _tracking_failed(gone or f"MLflow {what} failed: {type(exc).__name__}: {exc}")
            return None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.attempt(name, lambda mlflow: getattr(mlflow, name)(*args, **kwargs))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, model_id: str | None = None) -> None:
        """`model_id` (a LoggedModel's) also attaches the metrics to that model, as well as to this run."""
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if clean:
            self._call("log_metrics", clean, step=step, model_id=model_id)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._call("log_artifact", str(path), artifact_path=artifact_path)

    def log_artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self._call("log_artifacts", str(path), artifact_path=artifact_path)


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any], repo_root: Path, enabled: bool = True) -> Iterator[StageRun]:
    """Open (or reopen) this pipeline execution's MLflow run for `stage`; logs every param once, tags the run."""
    if not enabled or os.environ.get("MOZART_TRACKING", "1") == "0":
        yield StageRun(None, stage)
        return
    uri = tracking_uri(repo_root)
    gone = unreachable_reason(uri)
    if gone is not None:
        _tracking_failed(gone)
        yield StageRun(None, stage)
        return
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.set_experiment(EXPERIMENT)
        key = pipeline_key(params, repo_root)
        found = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                   max_results=1, output_format="list")
        run_name = os.environ.get("DVC_EXP_NAME") or key  # `dvc exp run`: the run is named after the experiment
        run = mlflow.start_run(run_id=found[0].info.run_id) if found else mlflow.start_run(run_name=run_name)
    except Exception as exc:
        _tracking_failed(f"{type(exc).__name__}: {exc}")
        yield StageRun(None, stage)
        return
    handle = StageRun(mlflow, stage, run.info.run_id, uri)
    tags = {KEY_TAG: key, f"mozart.stage.{stage}": "ran"}
    rev = git_revision(repo_root)
    if rev:
        tags["git_revision"] = rev
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    handle._call("set_tags", tags)
    handle._call("log_params", flatten(params))
    try:
        yield handle
    finally:
        handle._call("end_run")
