"""One optimizer step reads the device once; crops cut ahead in a background thread change nothing."""
from __future__ import annotations

import pytest
import torch

from mozart.training.batches import StepBatches
from mozart.training.trainer import Trainer, TrainPaths
from train_helpers import make_corpus, param_vector, tiny_configs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_an_optimizer_step_reads_the_device_once_not_once_per_micro_batch(corpus, monkeypatch):
    model_cfg, train_cfg = tiny_configs(grad_accum=4)
    trainer = Trainer(model_cfg, train_cfg, 7, TrainPaths.under(corpus))
    trainer.train_step()  # warm-up: lazy optimizer state
    reads = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _o=original, _n=name: reads.append(_n) or _o(self))
    loss = trainer.train_step()
    assert reads == ["tolist"]  # loss and gradient norm together, after the step
    assert loss > 0


def test_background_crops_are_the_batches_cut_inline():
    made = []

    def make_batch(step, micro):
        made.append((step, micro))
        g = torch.Generator().manual_seed(step * 10 + micro)
        x = torch.randint(0, 5, (2, 8), generator=g)
        return x, x.roll(1), torch.tensor([step, micro])

    inline = StepBatches(make_batch, grad_accum=2, pad_id=0, background=False, pin=False)
    ahead = StepBatches(make_batch, grad_accum=2, pad_id=0, background=True, pin=False)
    try:
        for step in (0, 1, 2, 5, 6):  # 5: a jump, as after a resume
            a, b = inline.for_step(step), ahead.for_step(step)
            assert [(x.inputs.tolist(), x.n_real) for x in a] == [(x.inputs.tolist(), x.n_real) for x in b]
            assert a[0].n_real == int((a[0].targets != 0).sum())
    finally:
        ahead.close()
    assert (7, 0) in made  # the background thread already cut the step after the last one asked for


def test_a_run_with_background_crops_ends_bitwise_equal_to_one_without(corpus):
    results = []
    for workers in (0, 1):
        model_cfg, train_cfg = tiny_configs(max_steps=4, num_workers=workers, resume="never")
        trainer = Trainer(model_cfg, train_cfg, 7, TrainPaths.under(corpus))
        metrics = trainer.fit()
        results.append((param_vector(trainer.model), metrics["tokens_seen"]))
    assert torch.equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]
