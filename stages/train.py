"""Stage train: data/tokens + data/prepared -> models/final, metrics/train.json, metrics/train_curve.tsv.

Single process: `python stages/train.py` (what `dvc repro` runs). Many GPUs or CPU processes:
`torchrun --nproc_per_node=N stages/train.py` — every rank trains on its own crops, rank 0 writes outputs and MLflow.
"""
from __future__ import annotations

from _common import REPO_ROOT, configs, load_params, run


def main() -> None:
    seed, (model_cfg, train_cfg) = configs("model", "train")
    from mozart.config import TrainStageConfig
    from mozart.infra import logged_model, tracking
    from mozart.paths import TrainPaths
    from mozart.training import distributed
    from mozart.training.trainer import run as train

    cfg, paths = TrainStageConfig(model_cfg, train_cfg), TrainPaths.under(REPO_ROOT)
    try:
        if not distributed.is_main_process():
            train(cfg, seed, paths)
            return
        with tracking.stage_run("train", load_params(), REPO_ROOT) as mlrun:
            metrics = train(cfg, seed, paths, tracker=mlrun)  # the per-step curve goes to MLflow as it trains
            if metrics is not None:  # None: stopped early (train.max_minutes) before publishing a model
                mlrun.log_metrics({f"final_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
                logged_model.publish_model(mlrun, paths.final_dir, metrics)  # the Models view of `mlflow ui`
                mlrun.log_artifact(paths.curve_tsv)
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    run(main)
