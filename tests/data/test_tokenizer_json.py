"""The tokenizer: settings pinned from TokenizeConfig, vocabulary size, and tokenizer.json reloading equal."""
from __future__ import annotations

import json

import pytest

from mozart.config import TokenizeConfig, build
from mozart.errors import DataError, MozartError
from mozart.data.tokenize import beat_res, build_tokenizer, load_tokenizer

METHODS = ["REMI", "REMIPlus", "MIDILike"]


def as_json(obj):
    """Normalise tuples vs lists the way a JSON round trip does."""
    return json.loads(json.dumps(obj, sort_keys=True))


def expected_remi_vocab(cfg: TokenizeConfig, n_time_signatures: int = 0, n_tempos: int = 32) -> int:
    """REMI vocabulary size derived from the settings, independently of miditok's code."""
    specials = 3  # PAD, BOS, EOS
    bar = 1
    pitches = cfg.pitch_max - cfg.pitch_min + 1  # inclusive range
    velocities = cfg.num_velocities
    # Duration bins: every (beat, position) of each beat_res range, minus the zero duration, plus the final one.
    durations = sum((end - start) * res for (start, end), res in beat_res(cfg.positions_per_beat).items())
    # Position tokens span the longest bar: 4 beats without time signatures, else the largest numerator (12/8).
    positions = cfg.positions_per_beat * (12 if cfg.use_time_signatures else 4)
    extra = (n_time_signatures if cfg.use_time_signatures else 0) + (n_tempos if cfg.use_tempos else 0)
    return specials + bar + pitches + velocities + durations + positions + extra


def test_default_vocab_size_is_pinned():
    # Literal pin: an accidental change of any default (params or miditok) must show up here.
    assert len(build_tokenizer(TokenizeConfig())) == 220


@pytest.mark.parametrize("overrides", [
    {},
    {"pitch_min": 36, "pitch_max": 96, "num_velocities": 8, "positions_per_beat": 4},
    {"use_tempos": True},
    {"use_time_signatures": True},
])
def test_remi_vocab_size_follows_settings(overrides):
    cfg = build("tokenize", overrides)
    tokenizer = build_tokenizer(cfg)
    n_time_signatures = sum(len(v) for v in tokenizer.config.time_signature_range.values())
    assert len(tokenizer) == expected_remi_vocab(cfg, n_time_signatures)
    kinds = {name.split("_")[0] for name in tokenizer.vocab}
    assert ("Tempo" in kinds) == cfg.use_tempos
    assert ("TimeSig" in kinds) == cfg.use_time_signatures
    assert "PitchDrum" not in kinds and "Program" not in kinds


def test_special_tokens_and_pitch_range():
    tokenizer = build_tokenizer(TokenizeConfig())
    assert tokenizer.pad_token_id == 0
    assert [tokenizer.vocab[t] for t in ("PAD_None", "BOS_None", "EOS_None")] == [0, 1, 2]
    pitches = sorted(int(n.split("_")[1]) for n in tokenizer.vocab if n.startswith("Pitch_"))
    assert pitches == list(range(21, 109))
    assert tokenizer.config.beat_res == {(0, 4): 8, (4, 12): 4}
    assert len([n for n in tokenizer.vocab if n.startswith("Velocity_")]) == 32


def test_remi_plus_is_remi_with_programs_and_time_signatures():
    tokenizer = build_tokenizer(TokenizeConfig(method="REMIPlus"))
    assert type(tokenizer).__name__ == "REMI"
    assert tokenizer.config.use_programs and tokenizer.config.use_time_signatures
    assert tokenizer.one_token_stream
    assert any(n.startswith("Program_") for n in tokenizer.vocab)


@pytest.mark.parametrize("method", METHODS)
def test_tokenizer_json_reloads_equal(tmp_path, method):
    import miditok

    tokenizer = build_tokenizer(TokenizeConfig(method=method, use_tempos=True))
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    assert json.loads(path.read_text())["tokenization"] == type(tokenizer).__name__
    for reloaded in (getattr(miditok, type(tokenizer).__name__)(params=path), load_tokenizer(path),
                     load_tokenizer(tmp_path)):
        assert type(reloaded) is type(tokenizer)
        assert reloaded.vocab == tokenizer.vocab
        assert as_json(reloaded.config.to_dict(serialize=True)) == as_json(tokenizer.config.to_dict(serialize=True))
        assert reloaded == tokenizer  # miditok's own equality (vocab + config)


def test_load_tokenizer_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="tokenize stage"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_tokenizer(bad)


def test_invalid_pitch_range_is_a_clear_error():
    with pytest.raises(MozartError, match="pitch_min"):
        build_tokenizer(TokenizeConfig(pitch_min=100, pitch_max=50))
