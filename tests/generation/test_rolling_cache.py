"""The rolling KV cache (mozart.generation.rolling): RoPE models generate past the context at one cached step per
token, attend to exactly the kept window at distances training saw, and learned-position models still refill."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mozart.config import SampleConfig
from mozart.errors import ConfigError
from mozart.generation.decoder import KVCache, SamplingSettings, decode, decode_reference
from mozart.generation.rolling import RollingKVCache, RollingLayout
from mozart.model.rope import Rotary, apply_rope
from sampling_helpers import bos_rows, model_and_grammar, one_thread  # noqa: F401 (autouse fixture)

GREEDY = SamplingSettings(temperature=0.0)
CONTEXT = 32


def chunk_sizes(model):
    """Record the token count T of every forward call of `model` (T > 1 = a prefill)."""
    sizes: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].size(1)))
    return sizes, hook


def test_the_layout_keeps_every_distance_below_the_context_and_sinks_just_before_the_recent_window():
    layout = RollingLayout.for_context(256, sinks=4)
    assert layout.slots <= 256 and layout.period == 32
    for p in range(0, 256 * 6):
        kept, virtual = layout.kept(p)
        assert kept[-1] == p and virtual[-1] == p  # the query's own key, at its own position
        assert max(p - v for v in virtual) <= 255
        assert virtual == sorted(virtual) and len(set(layout.slot(k) for k in kept)) == len(kept)
        if p >= 256 and (p - 256) % layout.period == 0:  # just re-anchored: sinks right before the oldest recent
            assert virtual[3] + 1 == virtual[4] == kept[4]
    with pytest.raises(ConfigError, match="attention_sinks"):
        RollingLayout.for_context(32, sinks=30)


def test_the_rolling_cache_attends_exactly_to_its_kept_window_at_its_virtual_positions():
    """Feed random keys one step at a time far past the context; every step's attention equals SDPA over the kept
    tokens' raw keys rotated directly at the layout's virtual positions (a recompute over the kept window)."""
    torch.manual_seed(0)
    head_dim, context, steps = 8, 24, 24 * 7
    rotary = Rotary(head_dim, 10000.0, context)
    layout = RollingLayout.for_context(context, sinks=3)
    cache = RollingKVCache(rotary, layout, n_layer=2, batch_size=2, n_head=2, head_dim=head_dim)
    raw_k, raw_v = torch.randn(2, 2, 2, steps, head_dim), torch.randn(2, 2, 2, steps, head_dim)
    for p in range(steps):
        q = apply_rope(torch.randn(2, 2, 1, head_dim), *rotary.at(torch.tensor([p])))
        kept, virtual = layout.kept(p)
        for layer in range(2):
            k_all, v_all = cache.update(layer, apply_rope(raw_k[layer, :, :, p:p + 1], *rotary.at(torch.tensor([p]))),
                                        raw_v[layer, :, :, p:p + 1])
            direct_k = apply_rope(raw_k[layer][:, :, kept], *rotary.at(torch.tensor(virtual)))
            expected = F.scaled_dot_product_attention(q, direct_k, raw_v[layer][:, :, kept])
            assert k_all.size(2) == len(kept)
            torch.testing.assert_close(F.scaled_dot_product_attention(q, k_all, v_all), expected,
                                       rtol=1e-5, atol=1e-5)
        cache.advance(1)


def test_within_its_slots_the_rolling_cache_gives_the_plain_caches_logits():
    tok, model, _ = model_and_grammar(context=CONTEXT, seed=1)
    tokens = torch.randint(3, model.config.vocab_size, (2, 20))
    composer = torch.tensor([1, 2])
    outs = []
    with torch.inference_mode():
        for cache in (KVCache.for_model(model, 2, CONTEXT), RollingKVCache.for_model(model, 2, sinks=4)):
            logits = [model(tokens[:, :8], composer, cache=cache)[0]]
            logits += [model(tokens[:, i:i + 1], composer, cache=cache)[0] for i in range(8, 20)]
            outs.append(torch.cat(logits, 1))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)


def test_within_the_context_a_rope_models_cached_decoding_equals_the_reference():
    tok, model, grammar = model_and_grammar(context=64, seed=2)
    settings = SamplingSettings(temperature=0.0, cfg_scale=2.0)
    composers = torch.tensor([1, 3])
    fast = decode(model, bos_rows(tok, 2), composers, settings, max_new_tokens=60, grammar=grammar)
    slow = decode_reference(model, bos_rows(tok, 2), composers, settings, max_new_tokens=60, grammar=grammar)
    assert fast.tokens == slow.tokens and all(len(r) >= 55 for r in fast.tokens)


# (plain greedy decoding of a tiny random model repeats one token forever: nothing to compare)
@pytest.mark.parametrize("settings", [SamplingSettings(temperature=0.0, cfg_scale=2.5),
                                      SamplingSettings(temperature=1.0, top_p=0.9, attention_sinks=2)])
def test_past_the_context_a_one_layer_model_equals_the_kept_window_recompute_token_for_token(settings):
    # one layer: every cached key depends on its own token only, so the cache and a recompute of its kept window agree
    tok, model, grammar = model_and_grammar(context=CONTEXT, seed=4, n_layer=1)
    composers = torch.tensor([1, 2, 0])
    kwargs = dict(max_new_tokens=7 * CONTEXT, grammar=grammar)  # the ring wraps 8 times, the sinks re-anchor often
    fast = decode(model, bos_rows(tok, 3), composers, settings, generator=torch.Generator().manual_seed(5), **kwargs)
    slow = decode_reference(model, bos_rows(tok, 3), composers, settings, generator=torch.Generator().manual_seed(5),
                            **kwargs)
    assert fast.tokens == slow.tokens and all(len(r) > 6 * CONTEXT for r in fast.tokens)
    refill = decode(model, bos_rows(tok, 3), composers, settings, generator=torch.Generator().manual_seed(5),
                    rolling=False, **kwargs)
    assert refill.tokens != fast.tokens  # the check has teeth: refilling attends to other tokens


def test_past_the_context_the_rolling_cache_never_reprefills_and_stays_decodable_in_fixed_memory():
    tok, model, grammar = model_and_grammar(context=CONTEXT, seed=3)
    sizes, hook = chunk_sizes(model)
    try:
        long = decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), SamplingSettings(temperature=1.0),
                      max_new_tokens=8 * CONTEXT, grammar=grammar, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert [t for t in sizes if t > 1] == [] and len(sizes) == 8 * CONTEXT  # BOS, then one token per step
    short = decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), SamplingSettings(temperature=1.0),
                   max_new_tokens=2 * CONTEXT, grammar=grammar, generator=torch.Generator().manual_seed(0))
    assert long.extra["kv_cache_bytes"] == short.extra["kv_cache_bytes"]
    for row in long.tokens:
        assert len(row) > 7 * CONTEXT and grammar.first_violation(row) is None
        assert tok.decode([row[1:]]).note_num() > 0


def test_a_prompt_longer_than_the_context_is_fed_once_then_token_by_token():
    tok, model, grammar = model_and_grammar(context=CONTEXT, seed=3, n_layer=1)
    prompt = decode(model, bos_rows(tok, 1), torch.tensor([1]), GREEDY, max_new_tokens=2 * CONTEXT,
                    grammar=grammar).tokens[0]
    prompt = torch.tensor([prompt[:50]])
    sizes, hook = chunk_sizes(model)
    try:
        fast = decode(model, prompt, torch.tensor([1]), GREEDY, max_new_tokens=40, grammar=grammar)
    finally:
        hook.remove()
    assert sizes[0] == RollingLayout.for_context(CONTEXT, 4).slots and set(sizes[1:]) == {1}
    assert fast.tokens == decode_reference(model, prompt, torch.tensor([1]), GREEDY, max_new_tokens=40,
                                           grammar=grammar).tokens


def test_learned_position_models_still_drop_half_the_window_and_refill():
    tok, model, grammar = model_and_grammar(context=CONTEXT, seed=3, positions="learned")
    sizes, hook = chunk_sizes(model)
    try:
        decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), GREEDY, max_new_tokens=4 * CONTEXT, grammar=grammar)
    finally:
        hook.remove()
    # 129 tokens: the window slides at 33, 49, ..., 113 tokens (the step that reaches 129 is the last, no refill)
    assert [t for t in sizes if t > 1] == [CONTEXT // 2] * 6
    with pytest.raises(ValueError, match="RoPE"):
        RollingKVCache.for_model(model, 2, sinks=4)


def test_attention_sinks_come_from_the_sample_config():
    assert SamplingSettings.from_config(SampleConfig(attention_sinks=9)).attention_sinks == 9
    assert SamplingSettings.from_config(SampleConfig()).attention_sinks == SampleConfig().attention_sinks
