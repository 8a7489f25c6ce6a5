"""Resumable training checkpoints, one folder per run, so no run can lose another's (or its own) checkpoints.

A run is named by its resume key (sha256 over the model and train params that change the weights, the seed, the
world size, the data fingerprint and, when fine-tuning, the base model's fingerprint). Its checkpoints live in `models/checkpoints/<key[:16]>/ckpt-<step>.pt`:

- pruning, after writing step S, removes only the run's own checkpoints older than S beyond the newest
  KEEP_CHECKPOINTS - 1 of them, and never looks at another folder: a new run beside an older run's higher-numbered
  checkpoints keeps every checkpoint it writes (a same-key checkpoint newer than S, left by a `train.resume: never`
  rerun, stays: same key means the same trajectory, so resuming from it is sound);
- resume tries the run's checkpoints newest first and loads the first that reads cleanly and carries the same key
  (a truncated newest file falls back to the previous one, with a warning);
- temporary files of a checkpoint whose write was killed (SIGKILL skips every cleanup) are removed when the run
  starts; DVC's repository lock keeps two runs of the train stage from sharing a folder.

Under DDP only rank 0 reads the folder (other ranks may not see it at all: node-local disks, a stale NFS listing);
`mozart.training.distributed.broadcast_object` hands its choice to every rank, so all ranks start at the same step.
Checkpoints are loaded with `torch.load(weights_only=True)`: no pickle code ever runs.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch

from mozart.infra.atomic import atomic_path, write_json

KEEP_CHECKPOINTS = 2
KEY_CHARS = 16  # folder name: 64 bits of the key, ample to tell a few hundred runs apart
# train params that do not change the trained weights: a checkpoint written under other values is still resumable
NON_STATE_KEYS = ("eval_every", "eval_batches", "ckpt_every", "resume", "num_workers", "max_minutes", "device",
                  "compile", "threads", "grad_checkpointing")


def resume_key(model_cfg: Any, cfg: Any, seed: int, world_size: int, fingerprint: str, base: str = "") -> str:
    """The run's identity: sha256 over the GPT config and TrainConfig dataclasses (less NON_STATE_KEYS), seed,
    world size, data fingerprint and, for a fine-tuning run, the base model's fingerprint (absent from the blob
    otherwise, so runs from scratch keep the keys they had before fine-tuning existed)."""
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NON_STATE_KEYS}
    blob = {"model": dataclasses.asdict(model_cfg), "train": train, "seed": seed, "world_size": world_size,
            "data": fingerprint}
    if base:
        blob["base"] = base
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


class CheckpointStore:
    """The checkpoints of one run (one resume key) under a shared `models/checkpoints/` root."""

    def __init__(self, root: Path, key: str, keep: int = KEEP_CHECKPOINTS):
        self.root = Path(root)
        self.key = key
        self.keep = keep
        self.directory = self.root / key[:KEY_CHARS]

    def paths(self) -> list[Path]:
        """This run's checkpoint files, oldest first (the zero-padded step sorts as text)."""
        return sorted(self.directory.glob("ckpt-*.pt"))

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temporary files a killed checkpoint write left in this run's folder; returns them."""
        stale = [Path(p) for p in glob.glob(str(self.directory / ".ckpt-*.pt.*.tmp"))]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def save(self, step: int, state: dict[str, Any], description: dict[str, Any] | None = None) -> Path:
        """Write `ckpt-<step>.pt` atomically, then prune this run's older checkpoints (never another run's)."""
        path = self.directory / f"ckpt-{step:07d}.pt"
        if description is not None and not (self.directory / "run.json").is_file():
            write_json(self.directory / "run.json", {"key": self.key, **description})  # what this folder holds
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        older = [p for p in self.paths() if p.name < path.name]
        for old in older[:len(older) - (self.keep - 1)]:
            old.unlink(missing_ok=True)
        return path

    def load_newest(self, say: Callable[[str], None]) -> dict[str, Any] | None:
        """The newest of this run's checkpoints that loads and carries this run's key, else None.

        A file that does not load (truncated, corrupt) or carries another key is skipped with a message, and the
        previous one is tried; the skipped file is left in place (pruning removes it once newer ones exist)."""
        for path in reversed(self.paths()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a truncated zip, a bad pickle opcode, an I/O error: try the previous one
                say(f"warning: checkpoint {path} is unreadable ({type(exc).__name__}); trying the previous one")
                continue
            if not isinstance(state, dict) or state.get("key") != self.key:
                say(f"warning: checkpoint {path} belongs to another run; trying the previous one")
                continue
            return state
        return None


def describe_run(model: dict[str, Any], train: dict[str, Any], seed: int, world_size: int) -> dict[str, Any]:
    """What `run.json` records beside a run's checkpoints, so a person can tell the folders apart."""
    return json.loads(json.dumps({"model": model, "train": train, "seed": seed, "world_size": world_size},
                                 default=str))
