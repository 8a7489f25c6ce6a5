"""Stage prepare: organize + tokenize manifests -> data/prepared (composers.json, metadata.parquet), metrics/data.json."""
from __future__ import annotations

from _common import REPO_ROOT, configs, load_params, run


def main() -> None:
    from mozart.infra import tracking
    from mozart.data.prepare import prepare

    seed, (cfg,) = configs("prepare")
    metrics_path = REPO_ROOT / "metrics" / "data.json"
    summary = prepare(REPO_ROOT / "data" / "organized", REPO_ROOT / "data" / "tokens", REPO_ROOT / "data" / "prepared",
                      metrics_path, cfg, seed)
    with tracking.stage_run("prepare", load_params(), REPO_ROOT) as mlflow_run:
        mlflow_run.log_metrics({f"data.{k}": v for k, v in summary.data.items()})
        mlflow_run.log_artifact(metrics_path, "metrics")
        mlflow_run.log_artifact(REPO_ROOT / "data" / "prepared" / "composers.json", "prepared")
    print(summary.line())


if __name__ == "__main__":
    run(main)
