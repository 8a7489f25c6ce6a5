"""Weight-only int8/int4 inference (mozart.model.quantize): the kernels compute what the stored weights say, the
quantisation error stays within its bound, and the quantised model decodes with the KV cache exactly as without."""
from __future__ import annotations

import pytest
import torch

from mozart.errors import ConfigError
from mozart.generation.grammar import RemiGrammar
from mozart.model.quantize import Int4Linear, Int8Linear, for_inference
from mozart.generation.decoder import SamplingSettings, decode, decode_reference
from sampling_helpers import one_thread, tiny_model, tokenizer  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def setup():
    tok = tokenizer()
    model = tiny_model(tok, context=32, seed=2, d_model=64)
    return tok, model, RemiGrammar.from_tokenizer(tok, model.config.vocab_size)


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).detach().norm() / exact.detach().norm())


@pytest.mark.parametrize("n_in,n_out,group", [(128, 96, 64), (64, 32, 32), (256, 64, 64)])
def test_int4_kernel_multiplies_by_the_stored_weights_and_error_is_bounded(n_in, n_out, group):
    torch.manual_seed(n_in + n_out)
    linear = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        linear.weight.normal_(0, 0.02)
        linear.weight[0, :group] = 0.5  # a constant group is stored exactly (step clamps, no division by zero)
    q = Int4Linear(linear, group)
    w = q.dequantized_weight()
    # every weight within half a quantisation step of its group (plus bf16 rounding of the stored scales)
    groups = linear.weight.detach().reshape(n_out, n_in // group, group)
    step = (groups.amax(-1) - groups.amin(-1)) / 15
    bound = (step / 2 + groups.abs().amax(-1) * 2**-7)[..., None]
    assert ((w.reshape_as(groups) - groups).abs() <= bound).all()
    assert torch.allclose(w[0, :group], torch.full((group,), 0.5), rtol=2**-7)
    assert 16 >= len(torch.unique(w[1, :group])) > 4  # really 4-bit levels, not a copy of the fp32 weights
    x = torch.randn(5, 3, n_in)
    out = q(x)
    assert out.shape == (5, 3, n_out) and out.dtype == torch.float32
    assert _relative_error(out, x @ w.t() + linear.bias) < 0.01  # kernel = its dequantised weight (bf16 inputs)
    assert 0.005 < _relative_error(out, linear(x)) < 0.15


def test_int8_linear_is_close_to_fp32():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    x = torch.randn(4, 96)
    err = _relative_error(Int8Linear(linear)(x), linear(x))
    assert 0 < err < 0.02


@pytest.mark.parametrize("precision,cls,tolerance", [("int8", Int8Linear, 0.05), ("int4", Int4Linear, 0.25)])
def test_quantised_model_is_close_to_fp32_and_cache_consistent(setup, precision, cls, tolerance):
    tok, model, grammar = setup
    fast = for_inference(model, precision)
    assert isinstance(fast.blocks[0].mlp.c_fc, cls) and isinstance(fast.blocks[1].attn.c_attn, cls)
    assert not isinstance(model.blocks[0].mlp.c_fc, cls)  # the model passed in is untouched
    assert fast.lm_head.weight is fast.wte.weight  # the tied head stays fp32 and tied
    idx = torch.randint(3, len(tok), (2, 20), generator=torch.Generator().manual_seed(0))
    cid = torch.tensor([1, 2])
    with torch.inference_mode():
        exact, approx = model(idx, cid)[0], fast(idx, cid)[0]
    assert 0 < _relative_error(approx, exact) < tolerance
    settings = SamplingSettings(temperature=0.0, cfg_scale=1.5)
    args = (fast, torch.full((2, 1), tok["BOS_None"]), cid, settings)
    assert (decode(*args, max_new_tokens=50, grammar=grammar).tokens
            == decode_reference(*args, max_new_tokens=50, grammar=grammar).tokens)


def test_int4_falls_back_to_int8_where_no_group_size_divides_the_width():
    model = torch.nn.Sequential(torch.nn.Linear(96, 48), torch.nn.Linear(48, 8))
    fast = for_inference(model, "int4")
    assert isinstance(fast[0], Int4Linear) and fast[0].group_size == 32  # 64 does not divide 96, 32 does
    assert isinstance(fast[1], Int8Linear)  # 48: no int4 group size divides it
    x = torch.randn(3, 96)
    assert _relative_error(fast(x), model(x)) < 0.15


def test_bad_precision_and_non_cpu_model_are_clear_errors(setup):
    _, model, _ = setup
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, int8, int4, got 'int3'"):
        for_inference(model, "int3")
    with pytest.raises(ConfigError, match="int4 uses a CPU kernel"):
        for_inference(torch.nn.Linear(64, 64, device="meta"), "int4")
