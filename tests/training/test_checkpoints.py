"""The per-run checkpoint store: pruning never reaches another run's folder, nor its own newest checkpoints."""
from __future__ import annotations

import torch

from mozart.training.checkpoints import CheckpointStore


def names(store: CheckpointStore) -> list[str]:
    return [p.name for p in store.paths()]


def test_a_new_run_keeps_its_checkpoints_beside_an_older_runs_higher_steps(tmp_path):
    old = CheckpointStore(tmp_path, "a" * 64)
    for step in (500, 1000):
        old.save(step, {"key": old.key, "step": step})
    new = CheckpointStore(tmp_path, "b" * 64)
    for step in (1, 2, 3):
        new.save(step, {"key": new.key, "step": step})
    assert names(new) == ["ckpt-0000002.pt", "ckpt-0000003.pt"]  # only its own older ones pruned
    assert names(old) == ["ckpt-0000500.pt", "ckpt-0001000.pt"]
    assert new.load_newest(print)["step"] == 3


def test_pruning_spares_same_run_checkpoints_newer_than_the_one_just_written(tmp_path):
    store = CheckpointStore(tmp_path, "c" * 64)
    for step in (7, 8):  # left by an earlier run of the same key (train.resume: never reruns it from step 0)
        store.save(step, {"key": store.key, "step": step})
    store.save(1, {"key": store.key, "step": 1})
    store.save(2, {"key": store.key, "step": 2})
    assert names(store) == ["ckpt-0000001.pt", "ckpt-0000002.pt", "ckpt-0000007.pt", "ckpt-0000008.pt"]


def test_a_checkpoint_with_another_key_in_the_folder_is_skipped(tmp_path):
    store = CheckpointStore(tmp_path, "d" * 64)
    store.save(1, {"key": store.key, "step": 1})
    torch.save({"key": "someone else", "step": 2}, store.directory / "ckpt-0000002.pt")
    messages: list[str] = []
    assert store.load_newest(messages.append)["step"] == 1
    assert "another run" in messages[0]


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    store = CheckpointStore(tmp_path, "e" * 64)
    store.save(1, {"key": store.key, "step": 1})
    stale = store.directory / ".ckpt-0000002.pt.x7q2.tmp"
    stale.write_bytes(b"half")
    unrelated = store.directory / "notes.txt"
    unrelated.write_text("mine")
    assert store.remove_stale_temp_files() == [stale]
    assert not stale.exists() and unrelated.exists() and names(store) == ["ckpt-0000001.pt"]
