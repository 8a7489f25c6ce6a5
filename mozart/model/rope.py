"""Rotary position embeddings (RoPE, Su et al. 2021) for MozartGPT's queries and keys.

Each pair of channels (i, i + head_dim/2) of a query or key at position p is rotated by the angle p * base^(-2i/d)
(the GPT-NeoX "rotate half" layout). A query at p and a key at p' then score q.k as a function of p - p' only,
which is what lets the rolling KV cache of mozart.generation.rolling keep attending past `model.context`: the recent
keys keep their positions, and the few kept leading keys (attention sinks) are rotated again so that no distance
exceeds what training saw.

The angles come from float64 positions (exact to ~1e-16 rad even at position 10^7), cast to the model's dtype once;
a table for positions 0..context-1 is made at construction; positions past it (the rolling cache, one token a step)
are computed a context-sized block at a time, so a decoding step past the context slices a table too.
Nothing here is a weight: the tables are non-persistent buffers, so model.safetensors holds no RoPE tensors.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(T,) integer positions -> cos, sin of shape (T, head_dim), float32, for `apply_rope`."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, head_dim) by the angles of cos/sin (T, head_dim)."""
    half = x.size(-1) // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Rotary(nn.Module):
    """The cos/sin tables of one model: `cos_sin(start, T)` gives the angles of positions start..start+T-1."""

    def __init__(self, head_dim: int, base: float, context: int):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        cos, sin = rope_cos_sin(torch.arange(context), head_dim, base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self._spill: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (first position, cos, sin) past the table

    def cos_sin(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if start + length <= self.cos.size(0):
            return self.cos[start:start + length], self.sin[start:start + length]
        spill = self._spill
        if (spill is None or not spill[0] <= start <= start + length <= spill[0] + spill[1].size(0)
                or spill[1].device != self.cos.device):
            # the same values as computing start..start+length-1 alone: every angle is computed on its own
            positions = torch.arange(start, start + max(length, self.cos.size(0)), device=self.cos.device)
            spill = self._spill = (start, *rope_cos_sin(positions, self.head_dim, self.base))
        first, cos, sin = spill
        return cos[start - first:start - first + length], sin[start - first:start - first + length]

    def at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for arbitrary (T,) positions (the rolling cache's re-anchored sinks)."""
        return rope_cos_sin(positions.to(self.cos.device), self.head_dim, self.base)
