"""Sampler: the KV cache equals full recompute (also across a learned-position model's window slides), CFG, seeds,
top-k, repetition penalty, bar-counted stopping."""
from __future__ import annotations

import pytest
import torch

from mozart.generation.grammar import RemiGrammar
from mozart.generation.decoder import (KVCache, SamplingSettings, TokenPicker, apply_repetition_penalty, decode,
                             decode_reference)
from sampling_helpers import bos_rows, model_and_grammar, one_thread, tokenizer  # noqa: F401 (autouse fixture)

GREEDY = SamplingSettings(temperature=0.0)


@pytest.fixture(scope="module")
def setup():
    return model_and_grammar(context=32, seed=2)


def test_kv_cache_protocol_returns_everything_cached():
    cache = KVCache(n_layer=2, batch_size=3, n_head=2, head_dim=4, max_len=10)
    k1, v1 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    k_all, v_all = cache.update(1, k1, v1)
    assert torch.equal(k_all, k1) and torch.equal(v_all, v1) and cache.pos == 0
    cache.advance(4)
    k2, v2 = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
    k_all, v_all = cache.update(1, k2, v2)
    assert torch.equal(k_all, torch.cat([k1, k2], 2)) and torch.equal(v_all, torch.cat([v1, v2], 2))
    with pytest.raises(RuntimeError, match="overflow"):
        cache.update(0, torch.randn(3, 2, 7, 4), torch.randn(3, 2, 7, 4))


@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_greedy_cached_equals_reference_across_window_slides(cfg_scale):
    # learned positions refill past the context (RoPE models roll instead: tests/generation/test_rolling_cache.py)
    tok, model, grammar = model_and_grammar(context=32, seed=2, positions="learned")
    settings = SamplingSettings(temperature=0.0, cfg_scale=cfg_scale)
    composers = torch.tensor([1, 2, 0])
    # 90 new tokens in a 32-token context: the window slides several times (keep 16, refill to 32, ...)
    fast = decode(model, bos_rows(tok, 3), composers, settings, max_new_tokens=90, grammar=grammar)
    slow = decode_reference(model, bos_rows(tok, 3), composers, settings, max_new_tokens=90, grammar=grammar)
    assert all(len(row) >= 89 for row in fast.tokens)  # 90 minus at most a trailing unfinished note
    assert fast.tokens == slow.tokens


def test_cfg_one_skips_the_unconditional_stream_and_equals_plain_sampling(setup):
    tok, model, _ = setup
    batch_sizes = []
    hook = model.register_forward_pre_hook(lambda m, args: batch_sizes.append(args[0].size(0)))
    try:
        settings = SamplingSettings(temperature=1.0, cfg_scale=1.0)
        got = decode(model, bos_rows(tok, 2), torch.tensor([1, 3]), settings, max_new_tokens=20,
                       generator=torch.Generator().manual_seed(7))
    finally:
        hook.remove()
    assert set(batch_sizes) == {2}  # never 4: no unconditional rows
    # plain conditional sampling, written out: full recompute, softmax, multinomial with the same generator
    g = torch.Generator().manual_seed(7)
    seq, cid = bos_rows(tok, 2), torch.tensor([1, 3])
    with torch.inference_mode():
        for _ in range(20):
            probs = torch.softmax(model(seq, cid)[0][:, -1].float(), -1)
            seq = torch.cat([seq, torch.multinomial(probs, 1, generator=g)], 1)
    assert got.tokens == seq.tolist()


def test_cfg_mixes_conditional_and_unconditional_logits():
    cond = torch.tensor([[2.0, 1.0, 0.0]])
    uncond = torch.tensor([[2.5, 0.0, 0.0]])
    picker = TokenPicker(SamplingSettings(temperature=0.0, cfg_scale=3.0), 3, None)
    # uncond + 3 (cond - uncond) = [1.0, 3.0, 0.0]: guidance flips the choice from token 0 to token 1
    assert picker(torch.cat([cond, uncond]), torch.empty(1, 0, dtype=torch.long), None, None).tolist() == [1]
    plain = TokenPicker(SamplingSettings(temperature=0.0), 3, None)
    assert plain(cond, torch.empty(1, 0, dtype=torch.long), None, None).tolist() == [0]


def test_seeds_reproduce_and_differ(setup):
    tok, model, grammar = setup
    settings = SamplingSettings(temperature=1.0, top_p=0.95, repetition_penalty=1.2, cfg_scale=1.5)

    def run(seed):
        return decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), settings, max_new_tokens=40, grammar=grammar,
                        generator=torch.Generator().manual_seed(seed)).tokens
    first = run(11)
    assert run(11) == first
    assert run(12) != first


def test_top_k_one_is_greedy(setup):
    tok, model, grammar = setup
    kwargs = dict(max_new_tokens=30, grammar=grammar, generator=torch.Generator().manual_seed(3))
    top1 = decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), SamplingSettings(temperature=1.0, top_k=1), **kwargs)
    greedy = decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), GREEDY, **kwargs)
    assert top1.tokens == greedy.tokens


def test_repetition_penalty_spares_structural_tokens():
    tok = tokenizer()
    grammar = RemiGrammar.from_tokenizer(tok)
    penalisable = grammar.token_class == 5  # PITCH
    recent_names = ["Bar_None", "Position_4", "Pitch_60", "Velocity_63", "Duration_1.0.8", "Pitch_62"]
    recent = torch.tensor([[tok[n] for n in recent_names]])
    logits = torch.linspace(-3, 3, len(tok))[None, :].clone()
    out = apply_repetition_penalty(logits, recent, 2.0, penalisable)
    changed = {tok[int(i)] for i in (out != logits).nonzero()[:, 1]}
    assert changed == {"Pitch_60", "Pitch_62"}  # Bar/Position/Velocity/Duration untouched
    for name in ("Pitch_60", "Pitch_62"):  # HF rule: positive logits shrink, negative ones grow more negative
        before, after = logits[0, tok[name]], out[0, tok[name]]
        assert after == (before / 2 if before > 0 else before * 2)


def test_repetition_window_limits_what_is_penalised(setup):
    tok, model, grammar = setup
    pitch = tok["Pitch_60"]
    settings = SamplingSettings(temperature=0.0, repetition_penalty=1e6, repetition_window=3)
    picker = TokenPicker(settings, len(tok), grammar.token_class == 5)
    logits = torch.ones(1, len(tok))
    logits[0, pitch] = 5.0
    vel, dur, bar = tok["Velocity_63"], tok["Duration_1.0.8"], tok["Bar_None"]
    far = torch.tensor([[pitch, vel, dur, bar]])   # Pitch_60 is 4 tokens back: outside the window of 3
    near = torch.tensor([[bar, pitch, vel, dur]])  # 3 tokens back: inside
    assert picker(logits, far, None, None).item() == pitch
    assert picker(logits, near, None, None).item() != pitch


def test_stops_after_exactly_the_target_bars(setup):
    tok, model, grammar = setup
    gen = decode(model, bos_rows(tok, 4), torch.tensor([0, 1, 2, 3]), SamplingSettings(temperature=1.0),
                   max_new_tokens=3000, target_bars=3, grammar=grammar, eos_id=tok["EOS_None"],
                   generator=torch.Generator().manual_seed(0))
    for row, reason in zip(gen.tokens, gen.stop_reason):
        assert reason in ("bars", "eos")
        assert sum(t == tok["Bar_None"] for t in row) == 3
        assert grammar.first_violation(row) is None
    assert gen.n_bars == [3, 3, 3, 3]


def test_max_new_tokens_caps_and_leaves_no_half_note(setup):
    tok, model, grammar = setup
    gen = decode(model, bos_rows(tok, 3), torch.tensor([1, 2, 3]), SamplingSettings(temperature=1.0),
                   max_new_tokens=25, target_bars=50, grammar=grammar, generator=torch.Generator().manual_seed(4))
    for row in gen.tokens:
        assert len(row) <= 26
        assert tok[row[-1]].split("_")[0] not in ("Pitch", "Velocity")
    assert set(gen.stop_reason) == {"max_tokens"}


def test_fused_sampling_tail_matches_hf_warpers_and_multinomial():
    """TokenPicker's one-sort top-k/top-p and its multinomial fast path give HF's warpers + torch.multinomial,
    token for token, and leave the generator in the same state."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    torch.manual_seed(0)
    for trial in range(300):
        batch, vocab = 1 + trial % 3, 220
        logits = torch.randn(batch, vocab) * 3
        allowed = torch.rand(batch, vocab) < (0.05, 0.3, 0.9)[trial % 3]
        allowed[:, trial % vocab] = True
        k, p, t = (0, 1, 5, 40, 300)[trial % 5], (1.0, 0.95, 0.5, 0.01)[trial % 4], (1.0, 0.9, 1.7)[trial % 3]
        picker = TokenPicker(SamplingSettings(temperature=t, top_k=k, top_p=p), vocab, None)
        g1, g2 = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        got = picker(logits, torch.empty(batch, 0, dtype=torch.long), allowed, g1)
        x = logits.masked_fill(~allowed, float("-inf"))
        warpers = ([TemperatureLogitsWarper(t)] if t != 1.0 else []) + ([TopKLogitsWarper(min(k, vocab))] if k else [])
        for warp in warpers + ([TopPLogitsWarper(p)] if p < 1 else []):
            x = warp(None, x)
        assert torch.equal(got, torch.multinomial(torch.softmax(x, -1), 1, generator=g2).squeeze(1))
        assert torch.equal(g1.get_state(), g2.get_state())
