"""Shared plumbing for the thin stage scripts: read params.yaml once, validate it as a whole, build typed configs,
log a stage's metrics and artifacts to MLflow, and turn a MozartError into one line on stderr (exit code 2).

Every stage script has the same shape (the stage contract): build the config and `<Stage>Paths.under(REPO_ROOT)`
(mozart/paths.py, mirroring dvc.yaml), call the library's `run(cfg, seed, paths) -> metrics`, log them here, print one
summary line. Stage scripts are the only place YAML is read, and the only place that talks to MLflow.
"""
from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from mozart.config import validate_params
from mozart.errors import MozartError

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_PATH = REPO_ROOT / "params.yaml"


@functools.lru_cache(maxsize=None)
def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params.yaml as read, the config of every section), read and validated once per process."""
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise MozartError(f"{path} not found: run the stage from the repository root") from None
    except yaml.YAMLError as exc:
        raise MozartError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return params, validate_params(params)


def load_params(path: Path = PARAMS_PATH) -> dict[str, Any]:
    """params.yaml, validated; the configs a stage runs with and the params it logs to MLflow come from the same
    read (treat the returned mapping as read-only)."""
    return _read(path)[0]


def configs(*sections: str) -> tuple[int, list[Any]]:
    """Return (seed, [config for each section]) from params.yaml, validated as a whole first (cross-section checks
    included), so a bad value fails before any heavy import or data read."""
    params, built = _read(PARAMS_PATH)
    return int(params.get("seed", 0)), [built[s] for s in sections]


def numeric(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) metrics dict, flattened to `<prefix>key.sub` names for MLflow."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(numeric(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = value
    return out


def log_stage(stage: str, metrics: dict[str, Any], prefix: str, files: Iterable[tuple[Path, str | None]] = (),
              folders: Iterable[tuple[Path, str]] = (), model_dir: Path | None = None) -> None:
    """Log one stage's metrics (named `<prefix>key`), files and folders into the pipeline's MLflow run; with
    `model_dir`, the metrics are also attached to that model's MLflow logged model (published by the train stage)."""
    from mozart.infra import logged_model, tracking

    with tracking.stage_run(stage, load_params(), REPO_ROOT) as mlrun:
        model_id = logged_model.find_model(mlrun, model_dir) if model_dir is not None else None
        mlrun.log_metrics(numeric(metrics, prefix), model_id=model_id)
        for path, artifact_path in files:
            mlrun.log_artifact(path, artifact_path)
        for path, artifact_path in folders:
            mlrun.log_artifacts(path, artifact_path=artifact_path)


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); a MozartError becomes one line on stderr and exit code 2, with no traceback."""
    try:
        main()
    except MozartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
