"""A rolling KV cache for RoPE models: generation past `model.context` at one cached step per token.

The plain KV cache (mozart.generation.decoder.KVCache) ends at the context; past it the decoder drops the oldest half
of the window and re-prefills the rest ("refill"), which learned-position models still need. With rotary positions a
query at p scores a key at p' as a function of p - p' only, so a RoPE model can keep going on a fixed set of cached
keys (StreamingLLM, Xiao et al. 2023): the first `sinks` tokens (attention sinks, `sample.attention_sinks`) plus the
most recent `recent` tokens.

Layout (`RollingLayout`): slots 0..sinks-1 hold the sinks, slots sinks..sinks+recent-1 a ring buffer of the recent
tokens. No shifting is needed: a single query's attention (SDPA with no mask) does not depend on the order of the
keys, so the newest token simply overwrites the oldest slot. Recent keys are rotated once, at their absolute
positions, and keep exact distances to every later query. The sinks' distance would grow without bound, so they are
re-anchored: their keys, kept as first rotated (positions 0..sinks-1), are rotated again to virtual positions just
before the oldest kept recent token. That is redone only every `period` tokens (context // 8), and the recent window
is `context - sinks - period + 1` tokens, so no query-key distance ever exceeds context - 1 (what training saw).

All rows of a batch share one position (`pos`): the decoder gives every row the same prompt length and keeps
finished rows stepping, so one layout serves the batch.

`RollingLayout.kept(p)` names the tokens and virtual positions the cache attends to at query position p; the slow
reference (decoder.decode_reference) recomputes the model over exactly those, so for a one-layer model the two agree
token for token. With more layers they differ by design: a cached key of layer l > 0 is what that token computed
when it was decoded, with the window of that time, whereas a recompute sees today's window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mozart.errors import ConfigError
from mozart.model.rope import apply_rope

REANCHOR_DIVISOR = 8  # the sinks are re-rotated every context // 8 tokens: a few small ops, amortised


@dataclass(frozen=True)
class RollingLayout:
    """Which tokens a rolling cache of `context` keeps, and at which virtual positions, for a query at position p."""
    context: int
    sinks: int
    period: int  # tokens between two re-anchorings of the sinks

    @classmethod
    def for_context(cls, context: int, sinks: int) -> "RollingLayout":
        layout = cls(context, sinks, max(1, context // REANCHOR_DIVISOR))
        if layout.recent < 2:
            raise ConfigError(f"sample.attention_sinks = {sinks} leaves no room for recent tokens in a context of "
                              f"{context}: use at most {context - layout.period - 1}")
        return layout

    @property
    def recent(self) -> int:
        """Recent tokens kept (the newest included)."""
        return self.context - self.sinks - self.period + 1

    @property
    def slots(self) -> int:
        """Cache slots in use: sinks + recent (<= context)."""
        return self.sinks + self.recent

    def slot(self, p: int) -> int:
        """The cache slot of the token at absolute position p."""
        return p if p < self.slots else self.sinks + (p - self.sinks) % self.recent

    def sink_start(self, p: int) -> int:
        """Virtual position of the first sink for a query at p: its true position 0 until the distance would pass
        context - 1, then just before the oldest recent token at the last re-anchoring (every `period` tokens)."""
        if p < self.context or self.sinks == 0:
            return 0
        anchored_at = self.context + (p - self.context) // self.period * self.period
        return anchored_at - self.recent + 1 - self.sinks

    def kept(self, p: int) -> tuple[list[int], list[int]]:
        """(absolute positions of the kept tokens, their virtual positions) for a query at p, oldest first."""
        if p < self.slots:
            return list(range(p + 1)), list(range(p + 1))
        recent = list(range(p - self.recent + 1, p + 1))
        first = self.sink_start(p)
        return list(range(self.sinks)) + recent, list(range(first, first + self.sinks)) + recent


def uses_rolling(model: Any, total_tokens: int) -> bool:
    """True when decoding `total_tokens` (prompt + new) goes past the context of a RoPE model: the rolling cache
    serves it; learned-position models and runs within the context use the plain cache (and refill)."""
    return model.config.positions == "rope" and total_tokens > model.config.context


class RollingKVCache:
    """The KV cache protocol of docs/CONTRACTS.md (`pos`, `update`, `advance`) with `rolling = True`: the model may
    run past its context, and rotates new queries and keys at their absolute positions `pos + i`.

    Memory is fixed: (n_layer, B, n_head, slots <= context, head_dim) keys and values, plus the sinks' keys as first
    rotated. A chunk of several tokens (the prompt) is accepted only while it fits the slots unwrapped; after that one
    token at a time (see `prefill`)."""

    rolling = True

    def __init__(self, rotary: Any, layout: RollingLayout, n_layer: int, batch_size: int, n_head: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, layout.slots, head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.sink_k = torch.empty(shape[:3] + (layout.sinks, head_dim), device=device, dtype=dtype)
        self.rotary, self.layout = rotary, layout
        self._layers = [(self.k[i], self.v[i], self.sink_k[i]) for i in range(n_layer)]  # per-layer views, made once
        self._sinks, self._slots, self._context = layout.sinks, layout.slots, layout.context  # plain ints: per-step
        self._anchor = [0] * n_layer    # virtual position of each layer's first sink as written in self.k
        self._rotation: tuple[int, Any] = (0, None)  # (sink_start, its cos/sin), computed once per re-anchoring
        self.pos = 0

    @classmethod
    def for_model(cls, model: Any, batch_size: int, sinks: int) -> "RollingKVCache":
        cfg = model.config
        if cfg.positions != "rope":
            raise ValueError("the rolling KV cache needs a RoPE model (model.positions = rope)")
        param = next(model.parameters())
        return cls(model.rotary, RollingLayout.for_context(cfg.context, sinks), cfg.n_layer, batch_size, cfg.n_head,
                   cfg.d_model // cfg.n_head, device=param.device, dtype=param.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T, p, slots = k.size(2), self.pos, self._slots
        if T > 1 and p + T > slots:
            raise RuntimeError(f"rolling KV cache: a {T}-token chunk at position {p} does not fit its {slots} "
                               "slots; feed the rest one token at a time")
        k_layer, v_layer, sink_layer = self._layers[layer]
        slot = p if p < slots else self.layout.slot(p)
        k_layer.narrow(2, slot, T).copy_(k)
        v_layer.narrow(2, slot, T).copy_(v)
        if p < self._sinks:  # keep the sinks' keys as rotated at their true positions, to re-anchor from
            n = min(T, self._sinks - p)
            sink_layer.narrow(2, p, n).copy_(k.narrow(2, 0, n))
        if p >= self._context:
            self._reanchor(layer, self.layout.sink_start(p))
            return k_layer, v_layer
        end = min(p + T, slots)
        return k_layer.narrow(2, 0, end), v_layer.narrow(2, 0, end)

    def _reanchor(self, layer: int, start: int) -> None:
        """Rotate this layer's sinks to virtual positions start..start+sinks-1 (rotations compose: rotating the
        keys rotated at 0..S-1 by `start` puts them at start..start+S-1)."""
        if self._anchor[layer] == start:
            return
        if self._rotation[0] != start:
            self._rotation = (start, self.rotary.at(torch.tensor([start])))
        cos, sin = self._rotation[1]
        k_layer, _, sink_layer = self._layers[layer]
        k_layer.narrow(2, 0, self._sinks).copy_(apply_rope(sink_layer, cos, sin))
        self._anchor[layer] = start

    def advance(self, n: int) -> None:
        self.pos += n

    def reset(self) -> None:
        self.pos = 0
        self._anchor = [0] * len(self._anchor)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.sink_k))


def prefill(model: Any, tokens: torch.Tensor, composer: torch.Tensor, cache: RollingKVCache) -> torch.Tensor:
    """Feed a prompt (B, T) into an empty rolling cache: as one chunk up to the cache's slots, the rest token by
    token (a prompt longer than that is rare; each token is one cached step). Returns the last position's logits."""
    first = min(tokens.size(1), cache.layout.slots)
    logits = model(tokens[:, :first], composer, cache=cache)[0][:, -1]
    for i in range(first, tokens.size(1)):
        logits = model(tokens[:, i:i + 1], composer, cache=cache)[0][:, -1]
    return logits
