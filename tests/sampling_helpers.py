"""Helpers for the generation tests: a REMI tokenizer, tiny random MozartGPT models and model directories, MIDI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import symusic
import torch

from mozart.config import TokenizeConfig
from mozart.model.gpt import GPTConfig, MozartGPT, save_model
from mozart.data.tokenize import build_tokenizer

COMPOSERS = ["<unconditional>", "Bach", "Chopin", "Mozart"]
N_PIECES = [0, 12, 30, 7]

_TOKENIZERS: dict[tuple, object] = {}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models decode fastest on one thread; with 2 threads on a busy shared machine every op waits for a
    preempted OpenMP worker (measured 70x slower). Import this fixture into a test module to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tokenizer(**overrides):
    """The pipeline's REMI tokenizer (cached: building one takes ~0.1 s)."""
    key = tuple(sorted(overrides.items()))
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = build_tokenizer(TokenizeConfig(**overrides))
    return _TOKENIZERS[key]


def tiny_model(tok, context: int = 64, seed: int = 0, n_layer: int = 2, d_model: int = 32,
               positions: str = "rope") -> MozartGPT:
    torch.manual_seed(seed)  # the model's own init uses the global RNG
    config = GPTConfig(n_layer=n_layer, d_model=d_model, n_head=2, d_ff=4 * d_model, context=context, dropout=0.0,
                       positions=positions,
                       vocab_size=len(tok), n_composers=len(COMPOSERS), pad_id=tok.pad_token_id,
                       bos_id=tok["BOS_None"], eos_id=tok["EOS_None"])
    return MozartGPT(config).eval()


def model_and_grammar(context: int, seed: int, **model_options):
    """(tokenizer, tiny model, its REMI grammar): what a decoder test samples with."""
    from mozart.generation.grammar import RemiGrammar

    tok = tokenizer()
    model = tiny_model(tok, context=context, seed=seed, **model_options)
    return tok, model, RemiGrammar.from_tokenizer(tok, model.config.vocab_size)


def bos_rows(tok, batch: int) -> torch.Tensor:
    """A (batch, 1) prompt of BOS tokens."""
    return torch.full((batch, 1), tok["BOS_None"])


def composers_json() -> dict:
    return {"unconditional_id": 0, "other_id": None, "names": COMPOSERS, "n_pieces": N_PIECES,
            "composer_to_id": {name: i for i, name in enumerate(COMPOSERS) if i > 0}}


def make_model_dir(root: Path, context: int = 256, seed: int = 0, **tok_overrides) -> Path:
    """A complete model directory (config, weights, tokenizer.json, composers.json) of a tiny random model."""
    tok = tokenizer(**tok_overrides)
    root.mkdir(parents=True, exist_ok=True)
    tok_path, comp_path = root / "src-tokenizer.json", root / "src-composers.json"
    tok.save(tok_path)
    comp_path.write_text(json.dumps(composers_json()))
    return save_model(tiny_model(tok, context=context, seed=seed), root / "model", tok_path, comp_path)


def scale_score(n_bars: int, tpq: int = 480, bpm: float | None = 96.0, seed: int = 0) -> symusic.Score:
    """A piano score of `n_bars` 4/4 bars: a varied eighth-note line plus a chord on each downbeat."""
    g = torch.Generator().manual_seed(seed)
    score = symusic.Score(tpq)
    track = symusic.Track("Piano", 0, False)
    for bar in range(n_bars):
        start = bar * 4 * tpq
        for i in range(8):
            pitch = 60 + int(torch.randint(-12, 13, (1,), generator=g))
            track.notes.append(symusic.Note(start + i * tpq // 2, tpq // 2, pitch, 64 + 4 * (i % 3)))
        for pitch in (48, 52, 55):
            track.notes.append(symusic.Note(start, 2 * tpq, pitch + bar % 5, 70))
    score.tracks.append(track)
    if bpm is not None:
        score.tempos.append(symusic.Tempo(0, bpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    return score


def write_midi(score: symusic.Score, path: Path) -> Path:
    score.dump_midi(str(path))
    return path


def write_zero_tpq_midi(path: Path) -> Path:
    """A MIDI file whose header says 0 ticks per quarter note (MThd division, bytes 12-13): notes but no timing."""
    write_midi(scale_score(4), path)
    data = bytearray(path.read_bytes())
    data[12:14] = bytes(2)
    path.write_bytes(bytes(data))
    return path
