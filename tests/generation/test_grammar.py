"""REMI grammar mask: real encodings pass it, untrained models constrained by it always decode, unsupported
tokenizers are refused or switched off with a warning."""
from __future__ import annotations

import pytest
import torch

from mozart.generation.engine import decode_piece
from mozart.generation.grammar import MAX_NOTES_PER_POSITION, RemiGrammar, UnsupportedGrammar, grammar_for_tokenizer
from mozart.generation.decoder import SamplingSettings, decode
from mozart.data.tokenize import encode_score
from sampling_helpers import one_thread, scale_score, tiny_model, tokenizer  # noqa: F401 (autouse fixture)


def _ids(tok, *names):
    return [tok[n] for n in names]


def test_real_encodings_satisfy_the_grammar():
    for overrides in ({}, {"use_tempos": True, "use_time_signatures": True}):
        tok = tokenizer(**overrides)
        grammar = RemiGrammar.from_tokenizer(tok)
        ids = encode_score(tok, scale_score(6, seed=3))
        assert len(ids) > 50
        assert grammar.first_violation(ids) is None, overrides


def test_allowed_next_tokens_follow_remi_order():
    tok = tokenizer()
    grammar = RemiGrammar.from_tokenizer(tok)
    state = grammar.start(1)
    grammar.feed_prompt(state, torch.tensor([_ids(tok, "BOS_None", "Bar_None", "Position_5", "Pitch_60")]))
    allowed = grammar.allowed(state)[0]
    assert allowed.sum() == sum(1 for n in tok.vocab if n.startswith("Velocity_"))  # Pitch -> Velocity only
    grammar.feed_prompt(state, torch.tensor([_ids(tok, "Velocity_63", "Duration_1.0.8")]))
    allowed = grammar.allowed(state)[0]
    assert not allowed[tok["Position_3"]] and not allowed[tok["Position_5"]]  # positions strictly increase
    assert allowed[tok["Position_6"]] and allowed[tok["Pitch_64"]] and allowed[tok["Bar_None"]]
    assert not allowed[tok["Velocity_63"]] and not allowed[tok["PAD_None"]] and not allowed[tok["BOS_None"]]
    grammar.feed(state, torch.tensor([tok["Bar_None"]]))
    assert grammar.allowed(state)[0, tok["Position_0"]]  # a new bar starts from position 0 again


def test_eos_waits_for_min_bars_and_chords_are_capped():
    tok = tokenizer()
    grammar = RemiGrammar.from_tokenizer(tok)
    state = grammar.start(2, min_bars=2)
    state.min_bars[1] = 1
    note = _ids(tok, "Pitch_60", "Velocity_63", "Duration_1.0.8")
    grammar.feed_prompt(state, torch.tensor([_ids(tok, "BOS_None", "Bar_None", "Position_0") + note] * 2))
    allowed = grammar.allowed(state)
    assert not allowed[0, tok["EOS_None"]] and allowed[1, tok["EOS_None"]]
    for _ in range(MAX_NOTES_PER_POSITION - 1):
        grammar.feed_prompt(state, torch.tensor([note] * 2))
    allowed = grammar.allowed(state)
    assert not allowed[:, tok["Pitch_61"]].any() and allowed[:, tok["Bar_None"]].all()


def test_time_signature_limits_positions():
    tok = tokenizer(use_time_signatures=True)
    grammar = RemiGrammar.from_tokenizer(tok)
    state = grammar.start(1)
    grammar.feed_prompt(state, torch.tensor([_ids(tok, "BOS_None", "Bar_None", "TimeSig_3/4")]))
    allowed = grammar.allowed(state)[0]
    per_beat = tok.config.max_num_pos_per_beat
    assert allowed[tok[f"Position_{3 * per_beat - 1}"]] and not allowed[tok[f"Position_{3 * per_beat}"]]


@pytest.mark.parametrize("overrides", [{}, {"use_tempos": True, "use_time_signatures": True}])
def test_untrained_model_with_grammar_always_decodes(overrides):
    tok = tokenizer(**overrides)
    model = tiny_model(tok, context=64, seed=1)
    grammar = RemiGrammar.from_tokenizer(tok, model.config.vocab_size)
    prompt = torch.full((8, 1), tok["BOS_None"])
    settings = SamplingSettings(temperature=1.3, top_p=1.0)  # hot sampling: the worst case for validity
    gen = decode(model, prompt, torch.arange(8) % 4, settings, max_new_tokens=200, grammar=grammar,
                   eos_id=tok["EOS_None"], generator=torch.Generator().manual_seed(0))
    for ids in gen.tokens:
        assert grammar.first_violation(ids) is None
        score, decodable = decode_piece(tok, ids, bpm=120)
        assert decodable and score.note_num() > 0
    # control: the same model without the mask breaks the grammar, so the mask is what makes samples valid
    free = decode(model, prompt, torch.arange(8) % 4, settings, max_new_tokens=200,
                    generator=torch.Generator().manual_seed(0))
    assert any(grammar.first_violation(ids) is not None for ids in free.tokens)


def test_unsupported_tokenizers_are_refused_or_switched_off():
    midilike = tokenizer(method="MIDILike")
    with pytest.raises(UnsupportedGrammar, match="REMI"):
        RemiGrammar.from_tokenizer(midilike)
    remi_plus = tokenizer(method="REMIPlus")
    with pytest.raises(UnsupportedGrammar, match="Program"):
        RemiGrammar.from_tokenizer(remi_plus)
    with pytest.warns(UserWarning, match="grammar-constrained decoding is off"):
        assert grammar_for_tokenizer(remi_plus) is None
    assert grammar_for_tokenizer(tokenizer(), enabled=False) is None


def test_allowed_equals_the_plain_formula_on_random_states():
    """`allowed` uses precomputed rows; it must equal the rule written out directly."""
    from mozart.generation.grammar import EOS, PITCH
    tok = tokenizer()
    grammar = RemiGrammar.from_tokenizer(tok)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        state = grammar.start(6, min_bars=2)
        state.last_class = torch.randint(0, len(grammar.class_names), (6,), generator=g)
        state.position = torch.randint(-1, grammar.n_positions, (6,), generator=g)
        state.notes_here = torch.randint(0, 15, (6,), generator=g)
        state.n_bars = torch.randint(0, 4, (6,), generator=g)
        state.position_limit = torch.randint(1, grammar.n_positions + 1, (6,), generator=g)
        pos = grammar.position_value[None, :]
        expect = grammar.next_table[state.last_class].clone()
        expect &= ~(((pos <= state.position[:, None]) | (pos >= state.position_limit[:, None])) & (pos >= 0))
        expect &= ~((state.notes_here >= grammar.max_notes_per_position)[:, None] & (grammar.token_class == PITCH))
        expect &= ~((state.n_bars < state.min_bars)[:, None] & (grammar.token_class == EOS))
        assert torch.equal(grammar.allowed(state), expect)
