"""REMI grammar as a logits mask, so every generated sequence decodes to MIDI.

REMI writes a piece as bars of timed note groups:

    Bar [TimeSig] Position [Tempo] Pitch Velocity Duration (Pitch Velocity Duration)* Position ... Bar ...

The grammar is a small state machine over token *classes* plus three counters per batch row: the current position
in the bar (positions must strictly increase within a bar and stay inside the bar's length, which a TimeSig token
sets), the notes started at that position (capped, so a bar always ends — an untrained model would otherwise stack
pitches forever) and the bars so far (EOS is refused until the requested number of bars exists).

Everything is a tensor: `allowed(state)` builds the (B, vocab) mask from precomputed per-token tables with a handful
of vectorised ops and `feed(state, tokens)` updates the counters; there is no Python loop over the vocabulary or the
batch per step.

Only plain REMI is supported (optionally with Tempo and TimeSig tokens). Tokenizers with programs (REMIPlus), chords,
rests, pedals, pitch bends or pitch intervals, and other methods (MIDILike), raise `UnsupportedGrammar`;
`grammar_for_tokenizer` turns that into a warning and generation runs unconstrained (miditok decodes most
unconstrained sequences anyway, and the sample stage reports the decodable fraction).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from mozart.errors import MozartError

# Token classes (the state machine's alphabet). START is the state before the first token (or after BOS).
START, BAR, TIMESIG, POSITION, TEMPO, PITCH, VELOCITY, DURATION, EOS, OTHER = range(10)
CLASS_NAMES = ("START", "BAR", "TIMESIG", "POSITION", "TEMPO", "PITCH", "VELOCITY", "DURATION", "EOS", "OTHER")
_PREFIX_CLASS = {"Bar": BAR, "TimeSig": TIMESIG, "Position": POSITION, "Tempo": TEMPO, "Pitch": PITCH,
                 "Velocity": VELOCITY, "Duration": DURATION, "EOS": EOS}
# Token kinds that this grammar cannot place; a vocab containing any of them is unsupported.
_UNSUPPORTED_PREFIXES = ("Program", "Chord", "Rest", "Pedal", "PitchBend", "PitchIntervalTime", "PitchIntervalChord",
                         "TimeShift", "NoteOff", "NoteOn", "PitchDrum", "KeySig", "BarEnd")
MAX_NOTES_PER_POSITION = 12  # piano chords rarely exceed ten notes; the cap guarantees that bars end


class UnsupportedGrammar(MozartError):
    """The tokenizer's vocabulary has token kinds the REMI grammar cannot constrain."""


@dataclass
class GrammarState:
    """Per-row decoding state, all (B,) long tensors on the model's device."""
    last_class: torch.Tensor
    position: torch.Tensor        # current position in the bar, -1 right after a Bar
    notes_here: torch.Tensor      # notes started at the current position
    n_bars: torch.Tensor          # Bar tokens seen so far
    position_limit: torch.Tensor  # positions per bar (from the last TimeSig, else the whole Position range)
    min_bars: torch.Tensor        # EOS is allowed only once n_bars >= min_bars


class RemiGrammar:
    """Precomputed class tables for one vocabulary; `allowed` and `feed` work on a batch of rows at once."""

    def __init__(self, vocab: Mapping[str, int], vocab_size: int, positions_per_beat: int,
                 use_velocities: bool = True, max_notes_per_position: int = MAX_NOTES_PER_POSITION):
        unsupported = sorted({name.split("_")[0] for name in vocab if name.startswith(_UNSUPPORTED_PREFIXES)}
                             | {"Bar_End" for name in vocab if name == "Bar_End"})
        if unsupported:
            raise UnsupportedGrammar(f"the REMI grammar cannot constrain {', '.join(unsupported)} tokens "
                                     "(use tokenize.method: REMI without programs/chords/rests)")
        if max(vocab.values()) >= vocab_size:
            raise MozartError(f"tokenizer has token id {max(vocab.values())} but the model's vocab_size is "
                              f"{vocab_size}: the model directory's tokenizer.json does not match its model")
        self.vocab_size = vocab_size
        self.max_notes_per_position = max_notes_per_position
        token_class = torch.full((vocab_size,), OTHER, dtype=torch.long)
        position_value = torch.full((vocab_size,), -1, dtype=torch.long)
        bar_length = torch.zeros(vocab_size, dtype=torch.long)  # TimeSig n/d -> n * positions_per_beat
        for name, tid in vocab.items():
            prefix, _, value = name.partition("_")
            token_class[tid] = _PREFIX_CLASS.get(prefix, OTHER)
            if prefix == "Position":
                position_value[tid] = int(value)
            elif prefix == "TimeSig":
                bar_length[tid] = int(value.split("/")[0]) * positions_per_beat
        present = {c: bool((token_class == c).any()) for c in range(len(CLASS_NAMES))}
        for needed in (BAR, POSITION, PITCH, DURATION):
            if not present[needed]:
                raise UnsupportedGrammar(f"the vocabulary has no {CLASS_NAMES[needed].title()} tokens, so it is not "
                                         "REMI; the grammar supports tokenize.method: REMI only")
        self.bar_id = int((token_class == BAR).nonzero()[0])
        self.n_positions = int((token_class == POSITION).sum())
        self.class_names = CLASS_NAMES

        # next_classes[c] = classes that may follow a token of class c (REMI order).
        note_start = {PITCH}
        after_pitch = {VELOCITY} if use_velocities and present[VELOCITY] else {DURATION}
        next_classes = {
            START: {BAR},
            BAR: {TIMESIG} if present[TIMESIG] else {POSITION, BAR},
            TIMESIG: {POSITION, BAR},
            POSITION: note_start | ({TEMPO} if present[TEMPO] else set()),
            TEMPO: note_start | {POSITION, BAR},
            PITCH: after_pitch,
            VELOCITY: {DURATION},
            DURATION: note_start | {POSITION, BAR, EOS},
            EOS: set(),
            OTHER: {BAR},  # e.g. BOS, which the sampler may feed as the first token
        }
        table = torch.zeros(len(CLASS_NAMES), vocab_size, dtype=torch.bool)
        for cls, allowed in next_classes.items():
            for nxt in allowed:
                table[cls] |= token_class == nxt
        self.next_table = table
        self.token_class = token_class
        self.position_value = position_value
        self.bar_length = bar_length
        self._device = torch.device("cpu")
        self._derive_tables()

    def _derive_tables(self) -> None:
        """Constant per-token rows for `allowed` (fewer ops per decoding step). A Position token is refused when its
        value is <= the current position or >= the bar's limit; other tokens get +-2**40 so neither test fires."""
        is_position = self.position_value >= 0
        big = 2**40
        self._pos_low = torch.where(is_position, self.position_value, big)[None, :]
        self._pos_high = torch.where(is_position, self.position_value, -big)[None, :]
        self._is_pitch = (self.token_class == PITCH)[None, :]
        self._is_eos = (self.token_class == EOS)[None, :]

    @classmethod
    def from_tokenizer(cls, tok: Any, vocab_size: int | None = None) -> "RemiGrammar":
        """Build from a miditok tokenizer (raises UnsupportedGrammar for non-REMI vocabularies)."""
        name = type(tok).__name__
        if name != "REMI":
            raise UnsupportedGrammar(f"the grammar supports REMI tokenizers only, not {name}")
        vocab = tok.vocab
        if not isinstance(vocab, Mapping):  # multi-vocabulary tokenizers (CPWord, Octuple) are lists of dicts
            raise UnsupportedGrammar(f"the grammar does not support multi-vocabulary tokenizers ({name})")
        config = tok.config
        return cls(vocab, vocab_size or len(vocab), positions_per_beat=int(config.max_num_pos_per_beat),
                   use_velocities=bool(getattr(config, "use_velocities", True)))

    def to(self, device: torch.device | str) -> "RemiGrammar":
        device = torch.device(device)
        if device != self._device:
            for attr in ("next_table", "token_class", "position_value", "bar_length"):
                setattr(self, attr, getattr(self, attr).to(device))
            self._device = device
            self._derive_tables()
        return self

    # ------------------------------------------------------------------------------------------------------------
    def start(self, batch_size: int, min_bars: int = 0) -> GrammarState:
        """A fresh state for `batch_size` rows, before any token."""
        def full(value: int) -> torch.Tensor:
            return torch.full((batch_size,), value, dtype=torch.long, device=self._device)
        return GrammarState(last_class=full(START), position=full(-1), notes_here=full(0), n_bars=full(0),
                            position_limit=full(self.n_positions), min_bars=full(min_bars))

    def feed(self, state: GrammarState, tokens: torch.Tensor) -> None:
        """Advance every row's state by one token; tokens is (B,) long."""
        cls = self.token_class[tokens]
        is_bar = cls == BAR
        is_position = cls == POSITION
        state.position = torch.where(is_bar, -1, torch.where(is_position, self.position_value[tokens], state.position))
        state.notes_here = torch.where(is_bar | is_position, 0, state.notes_here + (cls == PITCH).long())
        state.n_bars = state.n_bars + is_bar.long()
        state.position_limit = torch.where(cls == TIMESIG, self.bar_length[tokens], state.position_limit)
        state.last_class = cls

    def feed_prompt(self, state: GrammarState, prompt: torch.Tensor) -> None:
        """Advance by a (B, T) prompt, one column at a time (prompts are fed once, not per step)."""
        for t in range(prompt.size(1)):
            self.feed(state, prompt[:, t])

    def allowed(self, state: GrammarState) -> torch.Tensor:
        """(B, vocab) bool: the tokens each row may take next."""
        mask = self.next_table[state.last_class]
        refused = (self._pos_low <= state.position[:, None]) | (self._pos_high >= state.position_limit[:, None])
        refused |= (state.notes_here >= self.max_notes_per_position)[:, None] & self._is_pitch  # chord full
        refused |= (state.n_bars < state.min_bars)[:, None] & self._is_eos  # EOS too early
        return mask.masked_fill_(refused, False)

    def complete_length(self, ids: list[int]) -> int:
        """Length of `ids` without a trailing unfinished note (Pitch [Velocity] with no Duration yet), for
        sequences cut at a token limit."""
        n = len(ids)
        while n > 0 and int(self.token_class[ids[n - 1]]) in (PITCH, VELOCITY):
            n -= 1
        return n

    # ------------------------------------------------------------------------------------------------------------
    def first_violation(self, ids: list[int], min_bars: int = 0) -> int | None:
        """Index of the first token the grammar would have refused, or None if `ids` is valid (for tests/checks).

        A leading special token (BOS) is accepted: the sampler feeds it as the prompt, it never samples it.
        """
        state = self.start(1, min_bars=min_bars)
        for i, tid in enumerate(ids):
            leading_special = i == 0 and int(self.token_class[tid]) == OTHER
            if not leading_special and not bool(self.allowed(state)[0, tid]):
                return i
            self.feed(state, torch.tensor([tid], device=self._device))
        return None


def grammar_for_tokenizer(tok: Any, vocab_size: int | None = None, enabled: bool = True) -> RemiGrammar | None:
    """The REMI grammar for `tok`, or None (with a warning) when the tokenizer is not one it can constrain."""
    if not enabled:
        return None
    try:
        return RemiGrammar.from_tokenizer(tok, vocab_size)
    except UnsupportedGrammar as exc:
        warnings.warn(f"grammar-constrained decoding is off: {exc}; some samples may not decode to MIDI",
                      stacklevel=2)
        return None
