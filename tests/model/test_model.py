"""MozartGPT: shapes, composer conditioning, PAD-free loss, learning, save/load, KV cache, pickle refusal."""
from __future__ import annotations

import torch

import pytest

from mozart.errors import MozartError
from mozart.model.gpt import GPTConfig, MozartGPT, load_model, save_model


def tiny_config(**kw) -> GPTConfig:
    base = dict(n_layer=2, d_model=32, n_head=4, d_ff=64, context=64, dropout=0.0, vocab_size=50, n_composers=4,
                pad_id=0, bos_id=1, eos_id=2)
    base.update(kw)
    return GPTConfig(**base)


def tiny_model(**kw) -> MozartGPT:
    torch.manual_seed(0)
    model = MozartGPT(tiny_config(**kw))
    with torch.no_grad():  # random composer rows so conditioning has a visible effect at init
        model.wce.weight[1:].normal_(0, 0.5)
    return model.eval()


class SimpleCache:
    """The minimal KV cache of docs/CONTRACTS.md: concatenate per layer, advance once per forward."""

    def __init__(self):
        self.pos = 0
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, layer, k, v):
        if layer in self.kv:
            k = torch.cat([self.kv[layer][0], k], dim=2)
            v = torch.cat([self.kv[layer][1], v], dim=2)
        self.kv[layer] = (k, v)
        return k, v

    def advance(self, n):
        self.pos += n


def test_shapes_and_loss_none_without_targets():
    model = tiny_model()
    idx = torch.randint(3, 50, (3, 10))
    logits, loss = model(idx, torch.tensor([0, 1, 2]))
    assert logits.shape == (3, 10, 50)
    assert loss is None
    _, loss = model(idx, torch.tensor([0, 1, 2]), targets=idx)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_composer_id_changes_logits_and_zero_is_unconditional():
    model = tiny_model()
    idx = torch.randint(3, 50, (1, 12))
    l1, _ = model(idx, torch.tensor([1]))
    l2, _ = model(idx, torch.tensor([2]))
    l0, _ = model(idx, torch.tensor([0]))
    assert not torch.allclose(l1, l2)
    # id 0 must be exactly the model without any composer embedding
    wce = model.wce.weight.data.clone()
    model.wce.weight.data.zero_()
    l_none, _ = model(idx, torch.tensor([3]))
    model.wce.weight.data.copy_(wce)
    torch.testing.assert_close(l0, l_none)


def test_pad_targets_contribute_nothing():
    model = tiny_model()
    idx = torch.randint(3, 50, (2, 16))
    targets = torch.randint(3, 50, (2, 16))
    targets[:, 10:] = 0  # PAD
    _, loss_a = model(idx, torch.tensor([1, 2]), targets=targets)
    # changing the logits at PAD positions (via the inputs there) must not change the loss
    idx_b = idx.clone()
    idx_b[:, 10:] = torch.randint(3, 50, (2, 6))
    _, loss_b = model(idx_b, torch.tensor([1, 2]), targets=targets)
    torch.testing.assert_close(loss_a, loss_b)
    # and the loss equals the mean over non-PAD positions only
    _, loss_c = model(idx[:, :10], torch.tensor([1, 2]), targets=targets[:, :10])
    torch.testing.assert_close(loss_a, loss_c)


def test_label_smoothing_changes_loss():
    model = tiny_model()
    idx = torch.randint(3, 50, (2, 16))
    _, plain = model(idx, torch.tensor([1, 2]), targets=idx)
    model.label_smoothing = 0.1
    _, smooth = model(idx, torch.tensor([1, 2]), targets=idx)
    assert not torch.allclose(plain, smooth)


def test_few_steps_lower_loss_on_fixed_batch():
    model = tiny_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    idx = torch.randint(3, 50, (4, 32))
    cid = torch.tensor([0, 1, 2, 3])
    first = None
    for _ in range(20):
        _, loss = model(idx[:, :-1], cid, targets=idx[:, 1:])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_gradient_checkpointing_gives_same_gradients():
    idx = torch.randint(3, 50, (2, 20))
    cid = torch.tensor([1, 2])
    grads = []
    for ckpt in (False, True):
        model = tiny_model().train()
        model.gradient_checkpointing = ckpt
        _, loss = model(idx[:, :-1], cid, targets=idx[:, 1:])
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_save_load_identical_logits(tmp_path):
    model = tiny_model()
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "composers.json").write_text('{"names": []}')
    out = save_model(model, tmp_path / "final", tmp_path / "tokenizer.json", tmp_path / "composers.json")
    assert sorted(p.name for p in out.iterdir()) == ["composers.json", "config.json", "model.safetensors",
                                                     "tokenizer.json"]
    loaded = load_model(out)
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.wte.weight  # tying survives the round trip
    idx = torch.randint(3, 50, (2, 9))
    cid = torch.tensor([1, 3])
    assert torch.equal(model(idx, cid)[0], loaded(idx, cid)[0])


def test_kv_cache_matches_full_forward():
    model = tiny_model()
    idx = torch.randint(3, 50, (2, 20))
    cid = torch.tensor([1, 2])
    full, _ = model(idx, cid)
    cache = SimpleCache()
    parts = [model(idx[:, :8], cid, cache=cache)[0]]   # prefill
    parts.append(model(idx[:, 8:12], cid, cache=cache)[0])  # a chunk after a prefix
    for t in range(12, 20):                              # token by token
        parts.append(model(idx[:, t:t + 1], cid, cache=cache)[0])
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-4)


def test_context_overflow_is_a_clear_error():
    model = tiny_model()
    with pytest.raises(MozartError, match="context"):
        model(torch.randint(3, 50, (1, 65)), torch.tensor([0]))


def test_pickle_checkpoint_refused_unless_allowed(tmp_path):
    model = tiny_model()
    ckpt = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "config": model.config.__dict__}, ckpt)
    with pytest.raises(MozartError, match="pickle"):
        load_model(ckpt)
    with pytest.raises(MozartError, match="pickle"):
        load_model(tmp_path)  # a folder with only a pickle file
    loaded = load_model(ckpt, allow_pickle=True)
    idx = torch.randint(3, 50, (1, 5))
    assert torch.equal(model(idx, torch.tensor([2]))[0], loaded(idx, torch.tensor([2]))[0])


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(MozartError, match="not a model directory"):
        load_model(tmp_path / "nope")
