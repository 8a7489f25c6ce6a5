"""Stage train: data/tokens + data/prepared -> models/final, metrics/train.json, metrics/train_curve.tsv.

Single process: `python stages/train.py` (what `dvc repro` runs). Many GPUs or CPU processes:
`torchrun --nproc_per_node=N stages/train.py` — every rank trains on its own crops, rank 0 writes outputs and MLflow.
"""
from __future__ import annotations

from _common import REPO_ROOT, configs, load_params, run


def main() -> None:
    from mozart.training import distributed
    from mozart.infra import tracking
    from mozart.training.trainer import Trainer, TrainPaths

    seed, (model_cfg, train_cfg) = configs("model", "train")
    trainer = Trainer(model_cfg, train_cfg, seed, TrainPaths.under(REPO_ROOT))
    try:
        if trainer.dist.is_main:
            with tracking.stage_run("train", load_params(), REPO_ROOT) as mlflow_run:
                trainer.run = mlflow_run
                trainer.fit()
        else:
            trainer.fit()
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    run(main)
