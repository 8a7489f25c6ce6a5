"""The KV cache for decoding (the protocol is in docs/CONTRACTS.md): preallocated fp32 keys and values.

It hands the model views of everything cached and the model runs SDPA on them, so decoding with it equals
recomputing the whole sequence. A compact bf16 cache with its own attention was measured and dropped (BENCHMARKS.md):
it was 13 % faster at 2,048 tokens on one thread but 10-20 % slower on two, because CPU SDPA parallelises over heads
and oneDNN's bf16 batched matmul at one query row does not.
"""
from __future__ import annotations

from typing import Any

import torch


class KVCache:
    """Keys/values for every layer, preallocated as one (n_layer, B, n_head, max_len, head_dim) tensor each.

    Implements the protocol in docs/CONTRACTS.md: `pos`, `update(layer, k, v)`, `advance(n)`. Writing into a
    preallocated buffer avoids a torch.cat (and a fresh allocation) per layer per token.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, head_dim: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self._layers = [(self.k[i], self.v[i]) for i in range(n_layer)]  # per-layer views, made once
        self.max_len = max_len
        self.pos = 0

    @classmethod
    def for_model(cls, model: Any, batch_size: int, max_len: int) -> "KVCache":
        cfg = model.config
        param = next(model.parameters())
        return cls(cfg.n_layer, batch_size, cfg.n_head, cfg.d_model // cfg.n_head, min(max_len, cfg.context),
                   device=param.device, dtype=param.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: {end} > {self.max_len} positions")
        k_layer, v_layer = self._layers[layer]
        k_layer.narrow(2, self.pos, k.size(2)).copy_(k)
        v_layer.narrow(2, self.pos, v.size(2)).copy_(v)
        return k_layer.narrow(2, 0, end), v_layer.narrow(2, 0, end)

    def advance(self, n: int) -> None:
        self.pos += n

    def reset(self) -> None:
        self.pos = 0

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2
