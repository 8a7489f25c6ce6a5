"""2-process gloo DDP runs on CPU: ranks stay in sync, rank 0 alone writes the outputs and decides the resume."""
from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from train_helpers import checkpoint_files, ddp_worker, make_corpus, non_pad_targets


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
    assert metrics["tokens_seen"] == non_pad_targets(root, steps=4, world_size=2)  # both ranks' real tokens
    assert metrics["tokens_seen"] < 4 * 2 * 4 * 32 * 2  # steps * ranks * batch * seq_len * grad_accum: PAD excluded
    saved = json.loads((root / "metrics/train.json").read_text())
    assert saved["steps"] == 4 and saved["world_size"] == 2
    assert (root / "models/final/model.safetensors").is_file()
    assert list(checkpoint_files(root).values()) == [["ckpt-0000002.pt", "ckpt-0000004.pt"]]


@pytest.mark.timeout(300)  # the old code hung here: rank 1 started at step 0 while rank 0 resumed at step 2
def test_ranks_resume_at_rank_0s_step_when_only_rank_0_sees_the_checkpoints(tmp_path):
    root = make_corpus(tmp_path)
    mp.spawn(ddp_worker, args=(2, str(root), free_port(), 2, "-stopped"), nprocs=2, join=True)
    assert not (root / "rank1-checkpoints").exists() or not any((root / "rank1-checkpoints").rglob("*.pt"))
    mp.spawn(ddp_worker, args=(2, str(root), free_port(), None, "-resumed"), nprocs=2, join=True)
    m0 = json.loads((root / "rank0-resumed.json").read_text())
    m1 = json.loads((root / "rank1-resumed.json").read_text())
    assert m0["resumed_from"] == m1["resumed_from"] == 2
    assert m0["steps"] == m1["steps"] == 4
    p0 = load_file(str(root / "rank0-resumed.safetensors"))["params"]
    p1 = load_file(str(root / "rank1-resumed.safetensors"))["params"]
    assert torch.equal(p0, p1)  # rank 1 got rank 0's state, not a fresh start
