"""Pieces that end instead of stopping: the decoder's closing rule (`SamplingSettings.end`, `sample.end`,
`mozart generate --end`).

Without it a piece of N bars stops when the model samples the Bar that would open bar N + 1, wherever the music is:
often mid-phrase, and the last bar, which the model never expected to be last, is as busy as any other (or busier).
With it the last requested bar is a close:

- bars 1 .. N-1 are sampled as usual (the grammar refuses EOS before bar N, as always);
- in bar N only the downbeat may hold notes: every Position token but the bar's first one (value 0) and the Bar that
  would open bar N + 1 are refused, so the bar holds one closing sonority (a chord or a single note);
- EOS gets a bias that rises with each note of that sonority (`EOS_BIAS_PER_NOTE` nats per note, added to the logits
  of both CFG streams, so it survives guidance unchanged), so the chord closes after a few notes;
- the grammar's note cap (12 per position) means EOS is eventually the only token left: every row ends with EOS in
  bar N, never by a cut, and the REMI grammar still holds (the rule only removes tokens the grammar allowed).

The rule needs the REMI grammar (it reads the grammar's per-row state) and an EOS id; without either the decoder
falls back to stopping at the bar count.
"""
from __future__ import annotations

import torch

from mozart.generation.grammar import BAR, EOS, GrammarState, RemiGrammar

EOS_BIAS_PER_NOTE = 1.5  # nats added to EOS per note already in the closing sonority


class ClosingRule:
    """Per-step mask and EOS bias that turn bar `target_bars` into a closing sonority followed by EOS."""

    def __init__(self, grammar: RemiGrammar, target_bars: int, eos_bias_per_note: float = EOS_BIAS_PER_NOTE):
        self.target_bars = target_bars
        self.eos_bias_per_note = eos_bias_per_note
        # tokens refused in the final bar: any Position after the downbeat, and a further Bar
        self._refused_in_final = ((grammar.position_value > 0) | (grammar.token_class == BAR))[None, :]
        self._eos_row = (grammar.token_class == EOS).float()[None, :]

    def in_final_bar(self, state: GrammarState) -> torch.Tensor:
        """(B,) bool: rows whose last requested bar has begun."""
        return state.n_bars >= self.target_bars

    def restrict(self, state: GrammarState, allowed: torch.Tensor) -> torch.Tensor:
        """`allowed` (B, vocab) without the tokens the final bar refuses (other rows unchanged)."""
        return allowed & ~(self.in_final_bar(state)[:, None] & self._refused_in_final)

    def eos_bias(self, state: GrammarState, streams: int) -> torch.Tensor:
        """(streams * B, vocab) additive logits: EOS raised by the notes of the closing sonority so far (0 elsewhere)."""
        notes = torch.where(self.in_final_bar(state), state.notes_here, 0).float()
        bias = (notes * self.eos_bias_per_note)[:, None] * self._eos_row
        return bias.repeat(streams, 1) if streams > 1 else bias
