"""The trained model as an MLflow 3 LoggedModel, so `mlflow ui` lists it under the experiment's Models tab.

The train stage publishes models/final (config.json, model.safetensors, tokenizer.json, composers.json) as a plain
directory of files attached to a LoggedModel: no MLflow flavor, so nothing is pickled and nothing but these files is
stored. The model is created by, and an output of, the pipeline's run; its params are config.json, its metrics the
validation loss and bits per token. The evaluate stage attaches its metrics to the same model.

The two stages are separate processes, and DVC may rerun evaluate without train (or in another pipeline execution, so
another run), so evaluate finds the model by what it evaluates: every LoggedModel is tagged with the SHA-256 of its
directory's files (`MODEL_HASH_TAG`), and evaluate hashes its models/final and takes the newest READY model with that
tag. Nothing is written into models/final, so DVC's outputs are unchanged.

Every MLflow call goes through `StageRun.attempt`, under tracking.py's rules: a failure warns and the stage goes on
(the half-made model is marked FAILED where the store still answers); MOZART_TRACKING_REQUIRED=1 makes it fatal.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from mozart.infra.tracking import StageRun, flatten

MODEL_NAME = "mozart-gpt"
MODEL_TYPE = "mozart-gpt"
MODEL_HASH_TAG = "mozart.model_sha256"
MODEL_DIR_TAG = "mozart.model_dir"
# the metrics of metrics/train.json that describe the model (the rest describe the training run)
VAL_METRICS = ("val_loss", "val_bits_per_token", "val_ppl")
SEARCH_LIMIT = 20  # newest first: the READY model sought is among the latest few with the same content


def model_digest(model_dir: Path) -> str:
    """SHA-256 over the directory's files (relative names and bytes, in name order): equal for equal models,
    wherever the directory lies (the repo, `dvc exp run --temp`'s copy, a `dvc pull`)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def model_params(model_dir: Path) -> dict[str, str]:
    """config.json, flattened to MLflow params (`d_model`, `n_layer`, ...); empty when it is missing."""
    config = Path(model_dir) / "config.json"
    return flatten(json.loads(config.read_text())) if config.is_file() else {}


def _create_ready_model(mlflow: Any, run_id: str, model_dir: Path, tags: dict[str, str], step: int) -> str:
    """Create the LoggedModel, upload the directory's files into its artifact location, mark it READY and record it
    as the run's output; a failure after creation marks it FAILED (so the Models view does not show a model that
    never got its files as pending forever) and is raised on."""
    from mlflow.entities import LoggedModelOutput

    model = mlflow.initialize_logged_model(name=MODEL_NAME, source_run_id=run_id, tags=tags,
                                           params=model_params(model_dir), model_type=MODEL_TYPE)
    client = mlflow.MlflowClient()
    try:
        client.log_model_artifacts(model.model_id, str(model_dir))
        mlflow.finalize_logged_model(model.model_id, "READY")
        client.log_outputs(run_id=run_id, models=[LoggedModelOutput(model.model_id, step=step)])
    except Exception:
        with contextlib.suppress(Exception):  # the store itself is gone: the original failure is the one to report
            mlflow.finalize_logged_model(model.model_id, "FAILED")
        raise
    return model.model_id


def publish_model(mlrun: StageRun, model_dir: Path, train_metrics: Mapping[str, Any]) -> str | None:
    """Log `model_dir` as a LoggedModel of the run, with the validation metrics of `train_metrics` (logged to the
    run as well, at the final step); its model id, or None when tracking is off or failed."""
    if not mlrun.active or not Path(model_dir).is_dir():
        return None
    tags = {MODEL_HASH_TAG: model_digest(model_dir), MODEL_DIR_TAG: Path(model_dir).name}
    step = int(train_metrics.get("steps") or 0)
    model_id = mlrun.attempt("LoggedModel creation",
                             lambda mlflow: _create_ready_model(mlflow, mlrun.run_id, Path(model_dir), tags, step))
    if model_id is not None:
        mlrun.log_metrics({k: train_metrics[k] for k in VAL_METRICS if k in train_metrics}, step=step,
                          model_id=model_id)
    return model_id


def _newest_ready(mlflow: Any, digest: str) -> str | None:
    found = mlflow.search_logged_models(filter_string=f"tags.`{MODEL_HASH_TAG}` = '{digest}'",
                                        order_by=[{"field_name": "creation_time", "ascending": False}],
                                        max_results=SEARCH_LIMIT, output_format="list")
    # the status is filtered here: the search's filter does not take it
    return next((m.model_id for m in found if str(m.status) == "READY"), None)


def find_model(mlrun: StageRun, model_dir: Path) -> str | None:
    """The id of the newest READY LoggedModel (in the run's experiment) whose files are `model_dir`'s; None when
    tracking is off or no stage published this model here (a note says so: metrics then go to the run alone)."""
    if not mlrun.active or not Path(model_dir).is_dir():
        return None
    digest = model_digest(model_dir)
    model_id = mlrun.attempt("search_logged_models", lambda mlflow: _newest_ready(mlflow, digest))
    if model_id is None and mlrun.active:
        print(f"note: no MLflow logged model holds {model_dir} (sha256 {digest[:12]}); the {mlrun.stage} metrics "
              "are logged to the run only", file=sys.stderr)
    return model_id
