"""Distributed data parallel plumbing: one process per device, started by torchrun (or torch.multiprocessing).

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR/MASTER_PORT); without them we are a single process and
none of this does anything. NCCL on CUDA, gloo on CPU. Rank 0 alone writes checkpoints, metrics and MLflow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mozart.infra.device import pick_device
from mozart.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """Rank 0, or no torchrun at all: the process that writes outputs and talks to MLflow (readable before setup)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device_name: str = "auto") -> DistInfo:
    """Join the process group if torchrun started us; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(0, 0, 1, pick_device(device_name))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = pick_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs: lower "
                              "--nproc_per_node to the number of GPUs per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"multi-process training supports cuda and cpu, not {device.type}; use train.device: cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, local_rank, world_size, device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few floats over ranks (float64 on the rank's device)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_mean_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor on this rank's device over ranks, in place (queued: no host synchronisation)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's decision (e.g. 'time is up') for every rank, so all ranks stop at the same step."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's Python object (e.g. the checkpoint state it chose to resume from, or None) on every rank.

    Other ranks pass anything (None); what they get back is rank 0's. Tensors inside travel pickled through
    torch.distributed's object collective (on the rank's device with NCCL); `torch.load(weights_only=True)` has
    already vetted what rank 0 read, and a process group is a trusted channel between our own ranks."""
    if not info.enabled:
        return obj
    holder = [obj if info.is_main else None]
    dist.broadcast_object_list(holder, src=0, device=info.device if info.device.type == "cuda" else None)
    return holder[0]
