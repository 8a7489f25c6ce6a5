"""Pieces that end (SamplingSettings.end): the last bar is one closing sonority on the downbeat, then EOS, within the
grammar; and composer blends: the weighted sum of composer embeddings, a one-composer blend being that composer."""
from __future__ import annotations

import pytest
import torch

from mozart.errors import MozartError
from mozart.generation.decoder import SamplingSettings, decode, decode_reference
from mozart.generation.ending import EOS_BIAS_PER_NOTE, ClosingRule
from mozart.generation.engine import is_conditioned, resolve_blend, resolve_conditioning
from sampling_helpers import bos_rows, composers_json, model_and_grammar, one_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def setup():
    return model_and_grammar(context=64, seed=3)


def _run(setup, composers, settings, sampler=decode, target_bars=4, seed=0):
    tok, model, grammar = setup
    return sampler(model, bos_rows(tok, len(composers)), composers, settings, max_new_tokens=4000,
                   target_bars=target_bars, grammar=grammar, eos_id=tok["EOS_None"],
                   generator=torch.Generator().manual_seed(seed))


def _last_bar(tok, row):
    last = max(i for i, t in enumerate(row) if t == tok["Bar_None"])
    return [tok[t] for t in row[last + 1:]]


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_with_end_every_row_closes_with_a_downbeat_chord_and_eos_at_the_length(setup, cfg_scale):
    tok, _, grammar = setup
    gen = _run(setup, torch.tensor([0, 1, 2, 3, 1, 2]), SamplingSettings(temperature=1.0, cfg_scale=cfg_scale,
                                                                       end=True))
    assert gen.stop_reason == ["eos"] * 6
    assert gen.n_bars == [4] * 6
    for row in gen.tokens:
        assert row[-1] == tok["EOS_None"]
        assert grammar.first_violation(row, min_bars=4) is None
        last = _last_bar(tok, row)[:-1]  # without EOS
        assert [t for t in last if t.startswith("Position")] == ["Position_0"]
        assert sum(t.startswith("Pitch") for t in last) >= 1


def test_without_end_the_same_rows_are_cut_at_the_bar_count(setup):
    gen = _run(setup, torch.tensor([0, 1, 2, 3, 1, 2]), SamplingSettings(temperature=1.0, end=False))
    assert "bars" in gen.stop_reason  # an untrained model rarely picks EOS in the last bar by itself
    assert gen.n_bars == [4] * 6


def test_end_is_the_same_with_and_without_the_kv_cache(setup):
    settings = SamplingSettings(temperature=0.0, cfg_scale=1.5, end=True)
    fast = _run(setup, torch.tensor([1, 2]), settings, decode, target_bars=3)
    slow = _run(setup, torch.tensor([1, 2]), settings, decode_reference, target_bars=3)
    assert fast.tokens == slow.tokens and fast.stop_reason == ["eos", "eos"]


def test_eos_bias_rises_with_the_notes_of_the_closing_chord_and_only_in_the_final_bar(setup):
    tok, _, grammar = setup
    rule = ClosingRule(grammar, target_bars=2)
    state = grammar.start(3)
    state.n_bars = torch.tensor([1, 2, 2])
    state.notes_here = torch.tensor([5, 1, 3])
    bias = rule.eos_bias(state, streams=2)
    assert bias.shape == (6, grammar.vocab_size)
    eos = tok["EOS_None"]
    assert bias[:3, eos].tolist() == [0.0, EOS_BIAS_PER_NOTE, 3 * EOS_BIAS_PER_NOTE]
    assert torch.equal(bias[3:], bias[:3])  # both CFG streams: the bias survives guidance unchanged
    assert float(bias.abs().sum()) == float(bias[:, eos].abs().sum())  # nothing but EOS moves
    allowed = rule.restrict(state, torch.ones(3, grammar.vocab_size, dtype=torch.bool))
    assert bool(allowed[0].all())  # not yet in the final bar
    assert not bool(allowed[1, tok["Bar_None"]]) and not bool(allowed[1, tok["Position_4"]])
    assert bool(allowed[1, tok["Position_0"]]) and bool(allowed[1, eos])


# ------------------------------------------------------------------------------------------------------- blends

def test_a_one_hot_blend_conditions_the_model_exactly_like_the_composer_id(setup):
    tok, model, _ = setup
    idx = torch.randint(3, model.config.vocab_size, (4, 9))
    ids = torch.tensor([0, 1, 2, 3])
    one_hot = torch.nn.functional.one_hot(ids, model.config.n_composers).float()
    with torch.no_grad():
        assert torch.equal(model(idx, ids)[0], model(idx, one_hot)[0])


def test_a_blend_conditions_on_the_weighted_sum_of_embeddings(setup):
    _, model, _ = setup
    weights = torch.tensor([[0.0, 0.7, 0.3, 0.0]])
    want = 0.7 * model.wce.weight[1] + 0.3 * model.wce.weight[2]
    assert torch.allclose(model.composer_vector(weights)[0], want, atol=1e-7)


def test_generation_with_a_one_composer_blend_is_token_identical_to_the_composer(setup):
    settings = SamplingSettings(temperature=1.0, cfg_scale=1.5, end=True)
    by_id = _run(setup, torch.tensor([2, 2]), settings, seed=5)
    by_blend = _run(setup, torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 2), settings, seed=5)
    mixed = _run(setup, torch.tensor([[0.0, 0.5, 0.5, 0.0]] * 2), settings, seed=5)
    assert by_blend.tokens == by_id.tokens
    assert mixed.tokens != by_id.tokens


def test_blend_names_take_any_spelling_and_weights_are_normalised():
    composers = composers_json()
    weights, name = resolve_blend("chopin:0.7, J.S. Bach:0.3", composers)
    assert weights == pytest.approx([0.0, 0.3, 0.7, 0.0])
    assert name == "Chopin 70% + Bach 30%"
    assert resolve_blend("mozart:2,mozart:2", composers)[0] == [0.0, 0.0, 0.0, 1.0]
    assert resolve_blend("bach,chopin", composers)[0] == [0.0, 0.5, 0.5, 0.0]  # no weight = 1 each
    assert resolve_conditioning("Chopin", composers) == (2, "Chopin")  # a plain name is no blend
    assert is_conditioned([0.0, 0.0, 1.0, 0.0]) and not is_conditioned([1.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("query, message", [
    ("chopin:-1,bach:2", "must be a positive number"),
    ("chopin:lots", "must be a positive number"),
    ("chopin:0.5,chopan:0.5", "closest known: Chopin"),
    (",", "names no composer"),
])
def test_bad_blends_say_what_is_wrong(query, message):
    with pytest.raises(MozartError, match=message):
        resolve_blend(query, composers_json())


def test_progress_reports_rising_bar_counts_up_to_the_length(setup):
    tok, model, grammar = setup
    seen: list[int] = []
    decode(model, bos_rows(tok, 2), torch.tensor([1, 2]), SamplingSettings(end=True), max_new_tokens=4000,
             target_bars=6, grammar=grammar, eos_id=tok["EOS_None"], generator=torch.Generator().manual_seed(1),
             on_progress=seen.append)
    assert len(seen) >= 2 and seen == sorted(seen) and 0 <= seen[0] and seen[-1] <= 6 and seen[-1] > seen[0]
