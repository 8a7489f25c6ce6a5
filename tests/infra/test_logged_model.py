"""Issue 13, point 4: the trained model is an MLflow 3 LoggedModel (the Models view of `mlflow ui`), with its val
metrics, and the evaluate stage's metrics attach to the same model, found by the content of models/final.

Every test runs the tracking calls the stages make against one local SQLite store in a temporary folder, and reads
the model back through `mlflow.search_logged_models`.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlflow
import pytest

from mozart.errors import MozartError
from mozart.infra import logged_model, tracking
from sampling_helpers import make_model_dir

MODEL_FILES = {"config.json", "model.safetensors", "tokenizer.json", "composers.json"}
TRAIN_METRICS = {"val_loss": 1.5, "val_bits_per_token": 1.5 / math.log(2), "val_ppl": math.exp(1.5),
                 "train_loss": 2.0, "steps": 12}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """One store for the module: creating a SQLite store's tables takes seconds."""
    return tmp_path_factory.mktemp("mlflow-store")


@pytest.fixture
def store(store_dir, monkeypatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_dir / 'mlflow.db'}")
    monkeypatch.chdir(store_dir)  # a SQLite store keeps artifacts in ./mlruns
    for name in ("MOZART_TRACKING", "MOZART_TRACKING_REQUIRED", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    return store_dir


def _train(model_dir: Path, root: Path, key: str) -> tuple[str | None, str | None]:
    """What the train stage does: (the run id, the published model's id)."""
    with tracking.stage_run("train", {"key": key}, root) as run:
        return run.run_id, logged_model.publish_model(run, model_dir, TRAIN_METRICS)


def _evaluate(model_dir: Path, root: Path, key: str, metrics: dict[str, float]) -> tuple[str | None, str | None]:
    """What the evaluate stage does (stages/_common.py `log_stage`): (the run id, the model it attached to)."""
    with tracking.stage_run("evaluate", {"key": key}, root) as run:
        model_id = logged_model.find_model(run, model_dir)
        run.log_metrics(metrics, model_id=model_id)
        return run.run_id, model_id


def _models_of(model_dir: Path) -> list:
    digest = logged_model.model_digest(model_dir)
    return mlflow.search_logged_models(experiment_ids=[mlflow.get_experiment_by_name("mozart").experiment_id],
                                       filter_string=f"tags.`{logged_model.MODEL_HASH_TAG}` = '{digest}'",
                                       output_format="list")


def test_the_digest_is_the_same_for_a_copy_and_changes_with_one_byte(tmp_path):
    model_dir = make_model_dir(tmp_path / "a")
    copy = Path(shutil.copytree(model_dir, tmp_path / "elsewhere" / "final"))
    assert logged_model.model_digest(copy) == logged_model.model_digest(model_dir)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "dropout": 0.5}))
    assert logged_model.model_digest(copy) != logged_model.model_digest(model_dir)


def test_the_trained_model_is_a_ready_logged_model_of_its_run_with_its_config_files_and_val_metrics(store, tmp_path):
    model_dir = make_model_dir(tmp_path / "m", seed=1)
    run_id, model_id = _train(model_dir, tmp_path, "listed")
    [model] = _models_of(model_dir)
    assert model.model_id == model_id and str(model.status) == "READY" and model.source_run_id == run_id
    assert model.params == logged_model.model_params(model_dir) and model.params["n_layer"] == "2"
    metrics = {m.key: m for m in model.metrics}
    assert set(metrics) == set(logged_model.VAL_METRICS)  # train_loss and steps describe the run, not the model
    assert metrics["val_bits_per_token"].value == pytest.approx(TRAIN_METRICS["val_bits_per_token"])
    assert metrics["val_loss"].step == 12 and metrics["val_loss"].run_id == run_id
    # a plain directory of the model's own files (no MLmodel, no pickle), byte for byte
    files = {a.path for a in mlflow.MlflowClient().list_logged_model_artifacts(model_id)}
    assert files == MODEL_FILES
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, dst_path=str(tmp_path / "dl")))
    assert all((local / name).read_bytes() == (model_dir / name).read_bytes() for name in MODEL_FILES)
    assert [o.model_id for o in mlflow.get_run(run_id).outputs.model_outputs] == [model_id]


def test_evaluate_in_another_run_attaches_its_metrics_to_the_model_with_the_same_files(store, tmp_path):
    """As when DVC reruns evaluate alone after a sample.* change: another process, another run, a copy of
    models/final (as in `dvc exp run --temp`)."""
    model_dir = make_model_dir(tmp_path / "m", seed=2)
    train_run, model_id = _train(model_dir, tmp_path, "evaluated-train")
    copy = Path(shutil.copytree(model_dir, tmp_path / "exp-copy" / "models" / "final"))
    eval_run, found = _evaluate(copy, tmp_path, "evaluated-eval", {"test_bits_per_token": 2.25, "generated.gs": 0.5})
    assert found == model_id and eval_run != train_run
    [model] = _models_of(model_dir)
    by_key = {m.key: m for m in model.metrics}
    assert by_key["test_bits_per_token"].value == 2.25 and by_key["test_bits_per_token"].run_id == eval_run
    assert by_key["generated.gs"].value == 0.5 and by_key["val_loss"].run_id == train_run
    assert mlflow.get_run(eval_run).data.metrics["test_bits_per_token"] == 2.25  # the run has them too


def test_a_model_never_published_is_not_found_and_evaluate_logs_to_its_run_only(store, tmp_path, capsys):
    _train(make_model_dir(tmp_path / "published", seed=3), tmp_path, "unpublished-train")
    other = make_model_dir(tmp_path / "other", seed=4)  # other weights: another digest
    eval_run, found = _evaluate(other, tmp_path, "unpublished-eval", {"test_bits_per_token": 3.0})
    assert found is None and "no MLflow logged model holds" in capsys.readouterr().err
    assert mlflow.get_run(eval_run).data.metrics["test_bits_per_token"] == 3.0


def _failing_upload(self, model_id, local_dir, artifact_path=None):
    raise OSError("disk full")


def test_a_failed_upload_warns_marks_the_model_failed_and_the_stage_keeps_tracking(store, tmp_path, monkeypatch):
    model_dir = make_model_dir(tmp_path / "m", seed=5)
    monkeypatch.setattr(mlflow.MlflowClient, "log_model_artifacts", _failing_upload)
    with pytest.warns(UserWarning, match="LoggedModel creation failed: disk full"):
        run_id, model_id = _train(model_dir, tmp_path, "failed-upload")
    assert model_id is None
    [model] = _models_of(model_dir)
    assert str(model.status) == "FAILED" and not model.metrics
    with tracking.stage_run("evaluate", {"key": "failed-upload"}, tmp_path) as run:
        assert logged_model.find_model(run, model_dir) is None  # a FAILED model is not evaluated
        run.log_metrics({"after": 1.0})
    assert mlflow.get_run(run_id).data.metrics["after"] == 1.0  # same pipeline key, same run, still tracked


def test_required_tracking_makes_a_failed_publish_an_error(store, tmp_path, monkeypatch):
    monkeypatch.setattr(mlflow.MlflowClient, "log_model_artifacts", _failing_upload)
    monkeypatch.setenv("MOZART_TRACKING_REQUIRED", "1")
    with pytest.raises(MozartError, match="LoggedModel creation failed: OSError: disk full.*MOZART_TRACKING_REQUIRED"):
        _train(make_model_dir(tmp_path / "m", seed=6), tmp_path, "required")


def test_publishing_with_tracking_off_does_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MOZART_TRACKING", "0")
    with tracking.stage_run("train", {"key": "off"}, tmp_path) as run:
        assert logged_model.publish_model(run, make_model_dir(tmp_path / "m"), TRAIN_METRICS) is None
        assert logged_model.find_model(run, tmp_path / "m" / "model") is None
