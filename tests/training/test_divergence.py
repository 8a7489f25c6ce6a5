"""A diverging run stops with one clear line naming the step and the likely cause, and publishes nothing."""
from __future__ import annotations

import math

import pytest
import torch

from mozart.errors import MozartError, TrainingError
from mozart.training.trainer import LOG_EVERY, Trainer, TrainPaths, train
from train_helpers import make_corpus, tiny_configs


@pytest.fixture
def trained_root(tmp_path):
    """A corpus with a finished run's models/final and metrics, as a later rerun would find them."""
    root = make_corpus(tmp_path)
    model_cfg, train_cfg = tiny_configs(max_steps=2, eval_every=2)
    train(model_cfg, train_cfg, 7, TrainPaths.under(root))
    return root


def published(root):
    files = sorted((root / "models/final").iterdir()) + [root / "metrics/train.json", root / "metrics/train_curve.tsv"]
    return {p.name: p.read_bytes() for p in files}


def exploding(lr: float, **overrides):
    """Configs whose numbers blow up. params validation refuses such an lr before training starts; set it past the
    check so the trainer's own guard is tested, as it must catch a blow-up from any cause (AMP overflow, a bad
    batch, an lr schedule bug)."""
    model_cfg, train_cfg = tiny_configs(**overrides)
    object.__setattr__(train_cfg, "lr", lr)
    return model_cfg, train_cfg


def test_params_validation_refuses_an_infinite_lr_before_any_training():
    with pytest.raises(MozartError, match="train.lr = inf"):
        tiny_configs(lr=math.inf)


@pytest.mark.parametrize("lr", [math.inf, 1e30])
def test_an_exploding_learning_rate_stops_training_and_leaves_the_published_model(trained_root, lr):
    before = published(trained_root)
    model_cfg, train_cfg = exploding(lr, max_steps=50, ckpt_every=1, eval_every=50)
    with pytest.raises(TrainingError) as caught:
        train(model_cfg, train_cfg, 7, TrainPaths.under(trained_root))
    message = str(caught.value)
    assert "\n" not in message
    step = int(message.split("diverged at step ")[1].split(":")[0])
    assert step <= LOG_EVERY  # caught within the first logging interval
    assert "train.lr" in message and "models/final" in message
    assert published(trained_root) == before  # byte-identical


def test_a_diverged_step_writes_no_checkpoint(tmp_path):
    root = make_corpus(tmp_path)
    model_cfg, train_cfg = exploding(math.inf, max_steps=50, ckpt_every=1)
    trainer = Trainer(model_cfg, train_cfg, 7, TrainPaths.under(root))
    with pytest.raises(TrainingError, match=r"step (\d+)") as caught:
        trainer.fit()
    failed_step = int(str(caught.value).split("diverged at step ")[1].split(":")[0])
    steps = [int(p.stem.split("-")[1]) for p in root.glob("models/checkpoints/*/ckpt-*.pt")]
    assert all(s < failed_step for s in steps)  # only checkpoints of steps that were still finite
    for s in steps:
        state = torch.load(next(root.glob(f"models/checkpoints/*/ckpt-{s:07d}.pt")), weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.slow
def test_train_stage_with_an_infinite_lr_exits_2_and_leaves_models_final_byte_identical(tmp_path):
    """The issue's acceptance, through `python stages/train.py` on the tiny CPU config."""
    from stage_helpers import assert_one_line_error, file_hashes, make_repo_copy, run_stage, set_params

    root = make_repo_copy(tmp_path / "repo")
    make_corpus(root)
    model_cfg, train_cfg = tiny_configs(max_steps=4, eval_every=4, ckpt_every=4, threads=1)
    set_params(root, {**{f"model.{k}": v for k, v in vars(model_cfg).items()},
                      **{f"train.{k}": v for k, v in vars(train_cfg).items()}})
    assert run_stage(root, "train").returncode == 0
    before = file_hashes(root / "models/final"), file_hashes(root / "metrics")
    set_params(root, {"train.lr": math.inf, "train.max_steps": 50})
    proc = run_stage(root, "train")
    line = assert_one_line_error(proc, "lr")
    if "diverged" in line:  # else params validation caught .inf first, which is as good
        assert int(line.split("diverged at step ")[1].split(":")[0]) <= LOG_EVERY
    assert (file_hashes(root / "models/final"), file_hashes(root / "metrics")) == before
