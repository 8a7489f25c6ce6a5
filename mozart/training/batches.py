"""The micro-batches of each optimizer step, cut one step ahead in a background thread.

A step's batches are a pure function of (seed, step, rank, micro) (mozart.data.crops), so preparing step k+1 while
step k runs on the device changes nothing about which crops are trained on: a resumed or single-threaded run sees
exactly the same batches. The thread takes crop sampling and host-to-device staging (pinned memory, so the copy is
asynchronous) off the device's critical path; numpy and the tensor copies release the GIL, and on a GPU the main
thread mostly waits in CUDA calls. Each micro-batch also carries its count of non-PAD targets, counted on the host so
counting never synchronises with the device.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class MicroBatch:
    inputs: torch.Tensor
    targets: torch.Tensor
    composer_ids: torch.Tensor
    n_real: int  # targets that are not PAD: the tokens the loss actually trains on


MakeBatch = Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (step, micro) -> x, y, cid


class StepBatches:
    """`for_step(step)` -> that step's micro-batches; step + 1's are then started in the background."""

    def __init__(self, make_batch: MakeBatch, grad_accum: int, pad_id: int, background: bool, pin: bool):
        self.make_batch, self.grad_accum, self.pad_id, self.pin = make_batch, grad_accum, pad_id, pin
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="crops") if background else None
        self.pending: tuple[int, Future] | None = None

    def _prepare(self, step: int) -> list[MicroBatch]:
        batches = []
        for micro in range(self.grad_accum):
            x, y, cid = self.make_batch(step, micro)
            n_real = int((y != self.pad_id).sum())
            if self.pin:
                x, y, cid = x.pin_memory(), y.pin_memory(), cid.pin_memory()
            batches.append(MicroBatch(x, y, cid, n_real))
        return batches

    def for_step(self, step: int) -> list[MicroBatch]:
        if self.pending is not None and self.pending[0] == step:
            batches = self.pending[1].result()
        else:  # first step, or a jump (resume): cut it here
            batches = self._prepare(step)
        self.pending = (step + 1, self.pool.submit(self._prepare, step + 1)) if self.pool else None
        return batches

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            self.pending = None
