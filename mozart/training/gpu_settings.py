"""How training uses its device: the autocast dtype (and loss scaling), and whether to checkpoint activations.

AMP: bf16 where the hardware computes it natively — GPUs of compute capability 8.0+ (Ampere and newer) and CPUs with
AVX512-BF16 or AMX (x86) or BF16 (arm64); fp16 + GradScaler on older GPUs; fp32 on other CPUs. The GPU check is
`torch.cuda.is_bf16_supported(including_emulation=False)`: without that flag torch answers True on V100/T4 through
emulation, which trains in bf16 without flash attention (the math kernel materialises the score matrix). On a CPU
without native bf16, oneDNN emulates bf16 matmuls: measured 10x slower than fp32 on an AVX2-only CPU (a
128 -> 512 Linear over 4,096 tokens, one thread: 90 ms vs 9 ms), so there fp32 is both faster and exact.

Gradient checkpointing (`train.grad_checkpointing`): `auto` (the default) turns it on only when the estimated peak
training memory of one micro-batch would not fit in the GPU's free memory; it costs ~30 % more FLOPs (one extra
forward per block), and the seed recipe (8 x 512, seq 8192, batch 2) needs ~3 GiB without it by this estimate, so it
is off on every GPU with >= 4 GiB free. On CPU and MPS `auto` means off (no memory limit to read). `true`/`false`
force it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch

from mozart.errors import ConfigError

FIT_FRACTION = 0.8  # use at most this share of free GPU memory: allocator fragmentation and the CUDA workspace


CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # /proc/cpuinfo: x86 `flags`, arm64 `Features`


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU computes bf16 in hardware (per /proc/cpuinfo); False where that cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    lines = [line.split(":", 1)[1] for line in text.splitlines() if line.startswith(("flags", "Features"))]
    return bool(CPU_BF16_FLAGS & set(re.findall(r"\S+", " ".join(lines))))


def native_bf16(device: torch.device) -> bool:
    """True when the device computes bf16 in hardware, not through emulation (CUDA 8.0+, or a bf16-capable CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


def choose_amp_dtype(device_type: str, enabled: bool, bf16_supported: bool) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler): bf16 where it is native; else fp16 + scaler on CUDA, fp32 on CPU."""
    if not enabled or device_type not in ("cpu", "cuda"):
        return None, False   # MPS autocast is still patchy: train it in fp32
    if bf16_supported:
        return torch.bfloat16, False
    if device_type == "cpu":
        return None, False   # emulated bf16 on a CPU is ~10x slower than fp32
    return torch.float16, True


def estimate_training_bytes(n_layer: int, d_model: int, d_ff: int, vocab_size: int, n_params: int, batch_size: int,
                            seq_len: int, amp: bool, checkpointing: bool) -> int:
    """Peak bytes of one training micro-batch: weights + grads + AdamW moments, plus saved activations.

    Per block (SDPA's flash/memory-efficient kernels keep no T x T scores), with s*b tokens, h = d_model, f = d_ff
    and autocast: the fp32 residual stream twice (8 sbh), the bf16 copies fed to matmuls, q/k/v, attention output and
    projections (~14 sbh), dropout masks (2 sbh), and the MLP's two f-wide tensors (4 sbf); twice the 16-bit parts in
    fp32. Logits: bf16 + their fp32 copy and its gradient (10 sbV). With checkpointing only each block's input is
    kept, plus one block recomputed during backward. Measured within ~25 % by benchmarks/gpu_check.sh."""
    tokens = batch_size * seq_len
    half = 2 if amp else 4
    per_block = tokens * (8 * d_model + (7 * d_model + 2 * d_ff) * half + 2 * d_model)
    kept = tokens * 4 * d_model * n_layer + per_block if checkpointing else per_block * n_layer
    logits = tokens * vocab_size * (half + 8)
    return 16 * n_params + kept + logits


def resolve_grad_checkpointing(setting: bool | str, device: torch.device, estimate: Callable[[bool], int],
                               free_bytes: Callable[[torch.device], int] | None = None) -> bool:
    """train.grad_checkpointing -> on/off. `estimate(checkpointing)` gives peak bytes; `free_bytes` (tests fake it)
    reads the GPU's free memory."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ConfigError(f"train.grad_checkpointing must be auto, true or false, got {setting!r}")
    if device.type != "cuda":
        return False
    free = (free_bytes or (lambda d: torch.cuda.mem_get_info(d)[0]))(device)
    return estimate(False) > FIT_FRACTION * free
