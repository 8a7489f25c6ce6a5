"""A 2-process gloo DDP run of a few steps on CPU: ranks stay in sync, rank 0 alone writes the outputs."""
from __future__ import annotations

import json
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from train_helpers import ddp_worker, make_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run(tmp_path):
    root = make_corpus(tmp_path)
    mp.spawn(ddp_worker, args=(2, str(root), free_port()), nprocs=2, join=True)
    p0 = load_file(str(root / "rank0.safetensors"))["params"]
    p1 = load_file(str(root / "rank1.safetensors"))["params"]
    assert torch.equal(p0, p1)  # gradients were averaged: identical weights on both ranks
    metrics = json.loads((root / "rank0.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["tokens_seen"] == 4 * 2 * 4 * 32 * 2  # steps * ranks * batch * seq_len * grad_accum
    saved = json.loads((root / "metrics/train.json").read_text())
    assert saved["steps"] == 4 and saved["world_size"] == 2
    assert (root / "models/final/model.safetensors").is_file()
    assert sorted(p.name for p in (root / "models/checkpoints").iterdir()) == ["ckpt-0000002.pt", "ckpt-0000004.pt"]
