"""The CUDA path, on a real GPU (marked `cuda`: skipped without one; benchmarks/gpu_check.sh runs them)."""
from __future__ import annotations

import math

import pytest
import torch

from mozart.generation.decoder import SamplingSettings, decode
from mozart.model.gpt import GPTConfig, MozartGPT
from mozart.training.trainer import Trainer, TrainPaths
from train_helpers import make_corpus, param_vector, tiny_configs

pytestmark = pytest.mark.cuda


def cuda_trainer(root, **overrides) -> Trainer:
    model_cfg, train_cfg = tiny_configs(device="cuda", amp=True, **overrides)
    return Trainer(model_cfg, train_cfg, 7, TrainPaths.under(root))


def test_a_tiny_run_trains_on_the_gpu_in_native_bf16(tmp_path):
    trainer = cuda_trainer(make_corpus(tmp_path), max_steps=8)
    metrics = trainer.fit()
    assert metrics["device"] == "cuda" and metrics["steps"] == 8
    expected = "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
    assert metrics["amp_dtype"] == expected
    assert math.isfinite(metrics["val_loss"]) and metrics["val_loss"] < math.log(trainer.gpt_config.vocab_size)


def test_fp16_with_a_grad_scaler_trains_on_the_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    trainer = cuda_trainer(make_corpus(tmp_path), max_steps=8)
    metrics = trainer.fit()
    assert metrics["amp_dtype"] == "float16" and trainer.scaler is not None
    assert math.isfinite(metrics["val_loss"]) and trainer.scaler.get_scale() >= 1.0


def test_a_gpu_run_stopped_and_resumed_matches_an_uninterrupted_one(tmp_path):
    """Bit-exact on CPU; on a GPU the same crops and step order give weights equal to float tolerance."""
    straight = cuda_trainer(make_corpus(tmp_path / "a"), max_steps=6)
    straight.fit()
    root = make_corpus(tmp_path / "b")
    cuda_trainer(root, max_steps=6).fit(stop_at_step=3)
    resumed = cuda_trainer(root, max_steps=6)
    metrics = resumed.fit()
    assert metrics["resumed_from"] == 3
    torch.testing.assert_close(param_vector(resumed.model), param_vector(straight.model), rtol=1e-3, atol=1e-4)


def test_cached_generation_on_the_gpu_matches_full_recompute_greedily():
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, d_model=64, n_head=4, d_ff=128, context=256, vocab_size=100, n_composers=3,
                       dropout=0.0)
    model = MozartGPT(config).cuda().eval()
    prompt = torch.randint(3, 100, (2, 16), device="cuda")
    composer_id = torch.tensor([1, 2], device="cuda")
    settings = SamplingSettings(temperature=0.0, cfg_scale=1.5)
    gen = decode(model, prompt, composer_id, settings, max_new_tokens=32)
    assert gen.n_steps == 32
    with torch.no_grad():  # greedy: each new token is the argmax of the guided logits of the full sequence
        seq = torch.tensor(gen.tokens, device="cuda")[:, :16 + 8]
        cond = model(seq, composer_id)[0][:, -1]
        uncond = model(seq, torch.zeros_like(composer_id))[0][:, -1]
        guided = uncond + 1.5 * (cond - uncond)
    chosen = torch.tensor(gen.tokens, device="cuda")[:, 16 + 8]
    best = guided.max(-1).values  # the chosen token is the argmax, up to kernel rounding (TF32, other shapes)
    assert (guided.gather(1, chosen[:, None]).squeeze(1) >= best - 1e-3 * best.abs().clamp(min=1)).all()
