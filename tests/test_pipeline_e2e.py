"""End to end through DVC itself, on a temporary git copy of the repository and a tiny generated corpus.

One module-scoped run walks the whole life of a project, each test checking one promise:
`dvc repro` of the data stages, then of the whole DAG; a second `dvc repro` reproduces nothing; a `tokenize.*` change
reruns tokenize and prepare only; a `train.lr` change retrains and shows in `dvc metrics diff`; a `sample.*` change
reruns sample, evaluate and render only and changes `generated.*`; and one MLflow run holds every stage.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stage_helpers import STAGES, Project, ran, set_params, tiny_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    p = tiny_project(tmp_path_factory.mktemp("e2e"))
    root = p.root
    p.outputs = {}
    # 1. the data stages alone, then again (nothing to do), then a tokenize change
    p.outputs["data"] = p.dvc("repro", "prepare")
    p.outputs["data_again"] = p.dvc("repro", "prepare")
    set_params(root, {"tokenize.num_velocities": 16})
    p.outputs["tokenize_change"] = p.dvc("repro", "prepare")
    # 2. the whole DAG, then again
    p.outputs["full"] = p.dvc("repro")
    p.outputs["full_again"] = p.dvc("repro")
    p.commit("first full run")
    p.metrics_before = json.loads((root / "metrics" / "train.json").read_text())
    p.eval_before = json.loads((root / "metrics" / "eval.json").read_text())
    # 3. a learning-rate change
    set_params(root, {"train.lr": 0.0005})
    p.outputs["lr_change"] = p.dvc("repro")
    p.outputs["lr_diff"] = p.dvc("metrics", "diff", "--json")
    p.commit("lower lr")
    # 4. a sampling change
    set_params(root, {"sample.temperature": 1.6})
    p.outputs["sample_change"] = p.dvc("repro")
    p.outputs["sample_diff"] = p.dvc("metrics", "diff", "--json")
    # 5. a CSS rule of the listening page, and nothing else
    page = root / "mozart" / "report" / "page.py"
    original = page.read_text()
    page.write_text(original.replace("_CSS = \"\"\"", "_CSS = \"\"\"\nh1 { letter-spacing: 0.01em; }", 1))
    assert page.read_text() != original
    p.outputs["css_status"] = p.dvc("status", "--json")
    page.write_text(original)
    return p


def test_data_stages_run_then_nothing_to_reproduce(project):
    # music21 is not upstream of organize here: organize.source names the test corpus, not data/music21
    assert ran(project.outputs["data"]) == {"organize", "tokenize", "prepare"}
    assert ran(project.outputs["data_again"]) == set()
    data = json.loads((project.root / "metrics" / "data.json").read_text())
    assert data["files_in"] == 15 and data["accepted"] + data["duplicates"] + data["rejected"] == data["files_in"]
    assert data["composers"] == 3


def test_tokenize_param_change_reruns_tokenize_and_prepare_only(project):
    assert ran(project.outputs["tokenize_change"]) == {"tokenize", "prepare"}


def test_full_dag_runs_every_stage_then_nothing(project):
    assert ran(project.outputs["full"]) == set(STAGES) - {"organize", "tokenize", "prepare"}  # incl. music21 (empty)
    assert ran(project.outputs["full_again"]) == set()
    root = project.root
    for name in ("config.json", "model.safetensors", "tokenizer.json", "composers.json"):
        assert (root / "models" / "final" / name).is_file(), name
    curve = (root / "metrics" / "train_curve.tsv").read_text().splitlines()
    assert curve[0].split("\t")[:4] == ["step", "train_loss", "val_loss", "lr"] and len(curve) >= 3
    assert (root / "reports" / "index.html").is_file()
    assert json.loads((root / "metrics" / "sample.json").read_text())["decodable_fraction"] == 1.0


def test_lr_change_retrains_and_metrics_diff_shows_it(project):
    assert {"train", "sample", "evaluate", "render"} <= ran(project.outputs["lr_change"])
    assert not ran(project.outputs["lr_change"]) & {"organize", "tokenize", "prepare"}
    diff = json.loads(project.outputs["lr_diff"])["metrics/train.json"]
    assert "val_loss" in diff and diff["val_loss"]["old"] == project.metrics_before["val_loss"]
    assert diff["val_loss"]["new"] != diff["val_loss"]["old"]


def test_sample_change_reruns_sample_evaluate_render_only(project):
    assert ran(project.outputs["sample_change"]) == {"sample", "evaluate", "render"}
    diff = json.loads(project.outputs["sample_diff"])
    changed = {k for k, v in diff.get("metrics/eval.json", {}).items() if v.get("diff") not in (0, None)}
    assert any(k.startswith("generated.") for k in changed), diff


def test_one_mlflow_run_holds_every_stage(project):
    """Each pipeline execution is one MLflow run with every stage that ran: params, metrics, artifacts."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project.root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mozart"], output_format="list")
    by_params = {(r.data.params.get("tokenize.num_velocities"), r.data.params.get("train.lr")): r for r in runs}
    # The execution after the tokenize change ran tokenize .. render in one go (organize was cached).
    first = by_params[("16", "0.003")]
    assert all(first.data.tags.get(f"mozart.stage.{s}") for s in STAGES if s != "organize"), first.data.tags
    assert first.data.metrics["data.files_in"] == 15
    # The learning-rate execution: its final metrics are the ones train.json holds for that run.
    lowered = by_params[("16", "0.0005")]
    train_json = json.loads((project.root / "metrics" / "train.json").read_text())
    assert lowered.data.metrics["final_val_loss"] == pytest.approx(train_json["val_loss"])
    assert "generated.gs" in lowered.data.metrics and "sample.decodable_fraction" in lowered.data.metrics
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(lowered.info.run_id, "train_loss")) >= 2  # per-step, not only final
    top = {a.path for a in client.list_artifacts(lowered.info.run_id)}
    assert {"samples", "reports"} <= top, top
    # the model is a LoggedModel of the run (`mlflow ui`'s Models view), with the val metrics train.json holds
    [model] = client.search_logged_models([lowered.info.experiment_id],
                                          filter_string=f"source_run_id = '{lowered.info.run_id}'")
    model_files = {Path(a.path).name for a in client.list_logged_model_artifacts(model.model_id)}
    assert model_files == {"config.json", "model.safetensors", "tokenizer.json", "composers.json"}
    assert {m.key: m.value for m in model.metrics}["val_loss"] == pytest.approx(train_json["val_loss"])


def test_editing_a_css_rule_of_the_listening_page_changes_only_render(project):
    out = project.outputs["css_status"]
    status = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert set(status) == {"render"}, status
