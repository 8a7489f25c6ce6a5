"""RoPE positions (model.positions = rope): relative by construction, no weights, recorded in config.json."""
from __future__ import annotations

import json

import pytest
import torch

from mozart.config import ModelConfig
from mozart.errors import ConfigError
from mozart.model.gpt import GPTConfig, MozartGPT, load_model, save_model
from mozart.model.rope import Rotary, apply_rope, rope_cos_sin
from sampling_helpers import one_thread  # noqa: F401 (autouse fixture)


def _config(**kw) -> GPTConfig:
    return GPTConfig(**{"n_layer": 2, "d_model": 32, "n_head": 2, "d_ff": 64, "context": 64, "dropout": 0.0,
                        "vocab_size": 50, "n_composers": 3, **kw})


def test_a_rotated_query_key_score_depends_only_on_their_distance():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(p_q: int, p_k: int) -> float:
        cq, sq = rope_cos_sin(torch.tensor([p_q]), 16, 10000.0)
        ck, sk = rope_cos_sin(torch.tensor([p_k]), 16, 10000.0)
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert score(10, 3) == pytest.approx(score(1007, 1000), abs=1e-4)
    assert score(10, 3) == pytest.approx(score(100_007, 100_000), abs=1e-3)  # far past any table
    assert score(10, 3) != pytest.approx(score(10, 4), abs=1e-3)


def test_positions_past_the_table_equal_the_table_formula():
    rotary = Rotary(16, 10000.0, context=8)
    cos_in, sin_in = rotary.cos_sin(4, 4)
    cos_past, sin_past = rotary.cos_sin(6, 4)  # 6..9 runs past the 8-row table
    assert torch.equal(cos_past[:2], cos_in[2:]) and torch.equal(sin_past[:2], sin_in[2:])
    assert torch.allclose(cos_past, rope_cos_sin(torch.arange(6, 10), 16, 10000.0)[0])


def test_one_position_at_a_time_past_the_table_equals_computing_each_alone():
    """Decoding past the context asks for one position per step; the block computed ahead gives the same values."""
    rotary = Rotary(16, 10000.0, context=8)
    for p in [*range(8, 30), 5000, 4999, 5001]:  # through several blocks, and back
        cos, sin = rotary.cos_sin(p, 1)
        alone = rope_cos_sin(torch.tensor([p]), 16, 10000.0)
        assert torch.equal(cos, alone[0]) and torch.equal(sin, alone[1])


def test_a_rope_model_has_no_position_weights_and_rope_is_the_default():
    assert ModelConfig().positions == "rope"
    rope, learned = MozartGPT(_config()), MozartGPT(_config(positions="learned"))
    assert not any("wpe" in n or "rotary" in n for n in rope.state_dict())
    assert learned.num_params() - rope.num_params() == 64 * 32


def test_a_rope_model_shifted_by_its_cache_offset_scores_the_same_tokens_alike():
    """Rotations only see distances, so a sequence scored from cache position 0 and from position 20 gives the same
    logits (a learned-position model does not: its rows differ)."""
    torch.manual_seed(0)
    model = MozartGPT(_config()).eval()
    idx, cid = torch.randint(3, 50, (1, 12)), torch.tensor([1])
    with torch.no_grad():
        plain, _ = model(idx, cid)
        shifted = _score_from(model, idx, cid, start=20)
    assert torch.allclose(plain, shifted, atol=1e-5)


def _score_from(model, idx, cid, start: int):
    """Logits of idx placed at positions start.. with no earlier tokens visible."""
    x = model.wte(idx) + model.composer_vector(cid)[:, None, :]
    rope = model.rotary.cos_sin(start, idx.size(1))
    for block in model.blocks:
        x = block(x, None, rope)
    return model.lm_head(model.ln_f(x))


def test_config_json_records_positions_and_a_reloaded_rope_model_gives_the_same_logits(tmp_path):
    torch.manual_seed(1)
    model = MozartGPT(_config(rope_base=500.0)).eval()
    out = save_model(model, tmp_path / "m", None, None)
    saved = json.loads((out / "config.json").read_text())
    assert saved["positions"] == "rope" and saved["rope_base"] == 500.0
    again = load_model(out)
    idx = torch.randint(3, 50, (2, 20))
    with torch.no_grad():
        assert torch.equal(model(idx, torch.tensor([1, 2]))[0], again(idx, torch.tensor([1, 2]))[0])


def test_rope_needs_an_even_head_size():
    with pytest.raises(ConfigError, match="even head size"):
        ModelConfig(d_model=30, n_head=2)
    ModelConfig(d_model=30, n_head=2, positions="learned")  # learned positions do not care
