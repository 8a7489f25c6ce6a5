"""Weight-only quantisation for fast CPU decoding: `for_inference(model, "fp32" | "bf16" | "int8" | "int4")`.

Decoding one token at a time on a CPU is bound by memory traffic: every step streams all weights plus the KV cache.
At the seed architecture the fp32 weights are 100 MB a step, int8 25 MB, int4 13 MB. Measured inside the real
decode loop (benchmarks/generate.py) an int4 matmul takes half the time of an int8 one, because the weights do not
stay in the CPU's cache between steps (a hot-cache micro-benchmark shows no difference, which is misleading).

Only the transformer blocks' Linear layers are quantised. The tied embedding / output head, LayerNorms, attention
and the KV cache stay fp32: they are a small share of the bytes, and bf16 attention kernels are several times slower
than fp32 on CPUs (measured). The kernels are the CPU ones gpt-fast uses: `torch._weight_int8pack_mm` (per-output-
channel scales) and `torch._weight_int4pack_mm_for_cpu` (groups of `INT4_GROUP_SIZE` input channels, each with a
scale and an offset: w = min + q * scale, q in 0..15). Both take bf16 activations, cast around the call.

How much the model changes is measured, not assumed: benchmarks/quantize_quality.py reports the held-out bits per
token of every precision on a trained model (BENCHMARKS.md).
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from mozart.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "int8", "int4")
INT4_GROUP_SIZE = 64          # input channels sharing one scale/offset (the kernel accepts 32, 64, 128, 256)
_INT4_GROUP_SIZES = (256, 128, 64, 32)


class _WeightOnlyLinear(torch.nn.Module):
    """Shared forward: flatten to (rows, in), quantised matmul in bf16, add the fp32 bias, restore the shape."""

    bias: torch.Tensor | None

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._mm(x.reshape(-1, x.size(-1)).to(torch.bfloat16))
        # bias (fp32) + y (bf16) promotes to fp32: the same values as y.float() + bias, one op instead of two
        y = y.float() if self.bias is None else torch.add(self.bias, y)
        return y.view(*x.shape[:-1], y.size(-1))


class Int8Linear(_WeightOnlyLinear):
    """Weight-only int8 Linear with symmetric per-output-channel scales; takes and returns fp32."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("weight", torch.round(w / scales[:, None]).to(torch.int8))
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x, self.weight, self.scales)


class Int4Linear(_WeightOnlyLinear):
    """Weight-only int4 Linear, asymmetric per group of `group_size` input channels; takes and returns fp32.

    Each group of a row stores its minimum and a step (max - min) / 15; weights round to the nearest of the 16
    levels between. The packed layout is the CPU kernel's (`_convert_weight_to_int4pack_for_cpu`).
    """

    def __init__(self, linear: torch.nn.Linear, group_size: int = INT4_GROUP_SIZE):
        super().__init__()
        w = linear.weight.detach().float()
        n_out, n_in = w.shape
        if group_size not in _INT4_GROUP_SIZES or n_in % group_size:
            raise ValueError(f"int4 needs in_features divisible by a group size in {_INT4_GROUP_SIZES}, got {n_in}")
        groups = w.reshape(n_out, n_in // group_size, group_size)
        low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
        step = ((high - low) / 15).clamp(min=1e-8)
        q = torch.clamp(torch.round((groups - low) / step), 0, 15).to(torch.int32).reshape(n_out, n_in)
        # the kernel dequantises (q - 8) * scale + zero, so zero = low + 8 * scale gives low + q * scale
        zero = low + 8 * step
        scales_and_zeros = torch.stack([step.reshape(n_out, -1).t(), zero.reshape(n_out, -1).t()], dim=-1)
        self.group_size = group_size
        self.register_buffer("weight", torch._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(torch.bfloat16).contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    @staticmethod
    def group_size_for(in_features: int) -> int | None:
        """INT4_GROUP_SIZE, or the largest smaller group size that divides `in_features` (tiny test models)."""
        for size in _INT4_GROUP_SIZES:
            if size <= INT4_GROUP_SIZE and in_features % size == 0:
                return size
        return None

    def dequantized_weight(self) -> torch.Tensor:
        """The fp32 (out, in) weight the kernel multiplies by (for tests and error analysis)."""
        n_in = self.scales_and_zeros.size(0) * self.group_size
        return self._mm(torch.eye(n_in, dtype=torch.bfloat16)).float().t().contiguous()

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(x, self.weight, self.group_size, self.scales_and_zeros)


def _quantise_linears(model: Any, make: Any) -> Any:
    fast = copy.deepcopy(model)
    tied = getattr(fast, "wte", None)
    for module in list(fast.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and (tied is None or child.weight is not tied.weight):
                setattr(module, name, make(child))
    return fast


def _int4_or_int8(linear: torch.nn.Linear) -> torch.nn.Module:
    size = Int4Linear.group_size_for(linear.in_features)
    return Int4Linear(linear, size) if size else Int8Linear(linear)


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" is int4 on a CPU (fastest there; no measurable change in held-out loss, BENCHMARKS.md) and fp32 on
    GPUs, where decoding is not bound by weight bytes and the int kernels are CPU ones. Anything else is kept."""
    if precision == "auto":
        return "int4" if device.type == "cpu" else "fp32"
    return precision


def for_inference(model: Any, precision: str = "fp32") -> Any:
    """The model in `precision`: fp32 as is; bf16 (half the weight bytes; attention gets slower on CPUs without
    fast bf16 kernels); int8 / int4 = weight-only quantised Linear layers in the transformer blocks, everything
    else fp32 (int4 falls back to int8 for a layer whose width no int4 group size divides). bf16, int8 and int4
    return a converted copy; the model passed in is untouched."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return model
    if precision == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16)
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError(f"precision {precision} uses a CPU kernel: use bf16 or fp32 on a GPU")
    return _quantise_linears(model, Int8Linear if precision == "int8" else _int4_or_int8)
