"""Device and seeding helpers shared by train, sample and evaluate."""
from __future__ import annotations

import random

import numpy as np
import torch


DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def check_device_name(name: str, what: str = "device") -> None:
    """A device name Mozart accepts: auto, cpu, cuda, cuda:N or mps (syntax only; pick_device checks presence)."""
    from mozart.errors import ConfigError

    kind, colon, index = str(name).partition(":")
    if kind not in DEVICE_KINDS or (colon and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"{what} {name!r} is not a device name: use auto, cpu, cuda, cuda:N (a GPU index) or mps")


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers cuda, then mps, then cpu; an explicit device that is absent is an error, not a silent fallback."""
    from mozart.errors import ConfigError

    name = str(name)  # a torch.device works too
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but no CUDA GPU is available; use device: auto or cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} was requested but only {torch.cuda.device_count()} CUDA GPUs are "
                          f"visible (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was requested but MPS is not available; use device: auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
