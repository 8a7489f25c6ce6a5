"""AMP dtype and gradient checkpointing choices for GPUs, tested on CPU by faking what the GPU reports."""
from __future__ import annotations

import pytest
import torch

from mozart.errors import ConfigError
from mozart.training.gpu_settings import (choose_amp_dtype, estimate_training_bytes, native_bf16,
                                          resolve_grad_checkpointing)

CUDA = torch.device("cuda", 0)
GIB = 2**30


def test_amp_dtype_choice():
    assert choose_amp_dtype("cpu", True, True) == (torch.bfloat16, False)     # AVX512-BF16 / AMX / arm64 BF16
    assert choose_amp_dtype("cpu", True, False) == (None, False)              # emulated bf16: fp32 is faster
    assert choose_amp_dtype("cuda", True, True) == (torch.bfloat16, False)    # Ampere and newer
    assert choose_amp_dtype("cuda", True, False) == (torch.float16, True)     # older GPUs need loss scaling
    assert choose_amp_dtype("cuda", False, True) == (None, False)
    assert choose_amp_dtype("mps", True, False) == (None, False)


def fake_gpu(monkeypatch, native: bool) -> None:
    """torch.cuda.is_bf16_supported as on a real GPU: emulated bf16 counts unless including_emulation=False."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)


def test_a_gpu_with_only_emulated_bf16_trains_in_fp16_with_a_grad_scaler(monkeypatch):
    fake_gpu(monkeypatch, native=False)  # V100, T4: torch.cuda.is_bf16_supported() alone says True
    assert not native_bf16(CUDA)
    assert choose_amp_dtype("cuda", True, native_bf16(CUDA)) == (torch.float16, True)


def test_a_gpu_with_native_bf16_trains_in_bf16(monkeypatch):
    fake_gpu(monkeypatch, native=True)  # A100, H100
    assert choose_amp_dtype("cuda", True, native_bf16(CUDA)) == (torch.bfloat16, False)
    assert not native_bf16(torch.device("cpu"))


def recipe_estimate(checkpointing: bool) -> int:
    """The params.yaml recipe: 8 x 512, d_ff 2048, seq 8192, batch 2, ~30 M parameters, a REMI vocabulary."""
    return estimate_training_bytes(n_layer=8, d_model=512, d_ff=2048, vocab_size=300, n_params=30_000_000,
                                   batch_size=2, seq_len=8192, amp=True, checkpointing=checkpointing)


def test_checkpointing_saves_most_activation_memory_in_the_estimate():
    assert 2 * GIB < recipe_estimate(False) < 6 * GIB
    assert recipe_estimate(True) < recipe_estimate(False) / 2


@pytest.mark.parametrize("free_gib, expected", [(80, False), (16, False), (3, True), (1, True)])
def test_auto_checkpointing_turns_on_only_when_the_recipe_would_not_fit(free_gib, expected):
    assert resolve_grad_checkpointing("auto", CUDA, recipe_estimate, free_bytes=lambda d: free_gib * GIB) == expected


def test_auto_checkpointing_is_off_on_cpu_and_explicit_settings_win():
    never_called = lambda d: pytest.fail("CPU has no free-memory probe")  # noqa: E731
    assert resolve_grad_checkpointing("auto", torch.device("cpu"), recipe_estimate, never_called) is False
    assert resolve_grad_checkpointing(True, torch.device("cpu"), recipe_estimate) is True
    assert resolve_grad_checkpointing(False, CUDA, recipe_estimate, lambda d: 0) is False
    with pytest.raises(ConfigError, match="grad_checkpointing"):
        resolve_grad_checkpointing("sometimes", CUDA, recipe_estimate, lambda d: 0)


@pytest.mark.parametrize("flags,native", [
    ("flags\t\t: fpu sse2 avx2 fma", False),                                  # AVX2 only: bf16 would be emulated
    ("flags\t\t: fpu avx2 avx512f avx512bw", False),                         # AVX-512 without its BF16 extension
    ("flags\t\t: fpu avx2 avx512f avx512_bf16", True),                       # e.g. Zen 4, Cooper Lake
    ("flags\t\t: fpu avx512f amx_bf16 amx_tile", True),                      # Sapphire Rapids
    ("Features\t: fp asimd sve bf16", True),                                  # arm64 (Graviton 3, Apple M2)
])
def test_a_cpu_counts_as_native_bf16_only_with_its_bf16_instructions(tmp_path, flags, native):
    from mozart.training.gpu_settings import cpu_has_native_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{flags}\n\nprocessor\t: 1\n{flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False
