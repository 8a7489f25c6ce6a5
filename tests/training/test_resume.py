"""Resuming: a run stopped (or SIGKILLed) after step k and resumed ends bitwise equal to an uninterrupted run, whatever
other runs left in models/checkpoints/ and even when its newest checkpoint is truncated."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from mozart.training.trainer import Trainer, TrainPaths
from train_helpers import make_corpus, param_vector, tiny_configs

HELPER = Path(__file__).resolve().parents[1] / "train_helpers.py"


def run_fit(root: Path, stop_at_step: int | None = None, **train_overrides):
    model_cfg, train_cfg = tiny_configs(**train_overrides)
    trainer = Trainer(model_cfg, train_cfg, 7, TrainPaths.under(root))
    return trainer, trainer.fit(stop_at_step=stop_at_step)


def test_stop_then_resume_is_bitwise_identical(tmp_path):
    straight, _ = run_fit(make_corpus(tmp_path / "a"), max_steps=6, ckpt_every=2)
    root = make_corpus(tmp_path / "b")
    first, result = run_fit(root, stop_at_step=3, max_steps=6, ckpt_every=2)
    assert result is None and not (root / "models/final").exists()
    resumed, metrics = run_fit(root, max_steps=6, ckpt_every=2)
    assert metrics["resumed_from"] == 3 and metrics["steps"] == 6
    assert not torch.equal(param_vector(first.model), param_vector(resumed.model))
    assert torch.equal(param_vector(straight.model), param_vector(resumed.model))
    assert resumed.optimizer.state_dict()["state"][0]["step"] == straight.optimizer.state_dict()["state"][0]["step"]
    assert resumed.curve == straight.curve  # the loss curve survives the restart
    assert metrics["tokens_seen"] == straight.tokens_seen


def test_changed_params_start_fresh_with_a_message(tmp_path, capsys):
    root = make_corpus(tmp_path)
    run_fit(root, stop_at_step=2, max_steps=4)
    _, metrics = run_fit(root, max_steps=4, lr=1e-3)
    assert metrics["resumed_from"] == 0
    assert "starting fresh" in capsys.readouterr().err


def test_settings_that_do_not_change_the_weights_still_resume(tmp_path):
    root = make_corpus(tmp_path)
    run_fit(root, stop_at_step=2, max_steps=4)
    _, metrics = run_fit(root, max_steps=4, eval_every=1, max_minutes=60.0)
    assert metrics["resumed_from"] == 2


def test_resume_never_ignores_checkpoints(tmp_path):
    root = make_corpus(tmp_path)
    run_fit(root, stop_at_step=2, max_steps=4)
    _, metrics = run_fit(root, max_steps=4, resume="never")
    assert metrics["resumed_from"] == 0


def helper(root: Path, n_steps: int, delay: float) -> subprocess.Popen:
    env = {**os.environ, "MOZART_TRACKING": "0"}
    return subprocess.Popen([sys.executable, str(HELPER), str(root), str(n_steps), str(delay)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sigkill_beside_another_configs_checkpoints_then_resume_matches_uninterrupted(tmp_path):
    """The issue's reproduction: an older run of another config left higher-numbered checkpoints (in its own run
    folder and, from before run folders existed, loose in models/checkpoints/). The new run must keep its own
    checkpoints, survive a SIGKILL, and resume from them to the uninterrupted run's weights."""
    n_steps = 8
    straight_root, killed_root = make_corpus(tmp_path / "straight"), tmp_path / "killed"
    shutil.copytree(straight_root, killed_root)
    ckpts = killed_root / "models/checkpoints"
    run_fit(killed_root, max_steps=12, ckpt_every=1, lr=1e-3)  # another config: its ckpt-11 and ckpt-12 stay
    shutil.rmtree(killed_root / "models/final")
    legacy = ckpts / "ckpt-0000500.pt"
    legacy.write_bytes(b"a checkpoint written before run folders existed")
    others = snapshot(ckpts)
    straight = helper(straight_root, n_steps, 0.0)
    victim = helper(killed_root, n_steps, 0.5)  # slow steps so the kill lands mid-run
    deadline = time.time() + 120

    def own_checkpoints() -> list[Path]:
        return [p for p in ckpts.glob("*/ckpt-*.pt") if str(p.relative_to(ckpts)) not in others]

    while not [p for p in own_checkpoints() if p.name >= "ckpt-0000003.pt"] and victim.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_root / "models/final").exists()  # it really died before finishing
    kept = own_checkpoints()
    assert kept and "ckpt-0000008.pt" not in {p.name for p in kept}
    assert max(p.name for p in kept) >= "ckpt-0000003.pt"  # its newest checkpoint was not pruned
    run_dir = kept[0].parent
    stale = run_dir / ".ckpt-0000009.pt.k1ll3d.tmp"  # what a write killed mid-way leaves
    stale.write_bytes(b"half a checkpoint")
    resumed = helper(killed_root, n_steps, 0.0)
    for proc in (straight, resumed):
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert "resuming from checkpoint" in err
    assert not stale.exists()
    assert {k: v for k, v in snapshot(ckpts).items() if k in others} == others  # the other runs' files untouched
    a = load_file(str(straight_root / "params.safetensors"))
    b = load_file(str(killed_root / "params.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    straight, _ = run_fit(make_corpus(tmp_path / "a"), max_steps=5, ckpt_every=1)
    root = make_corpus(tmp_path / "b")
    run_fit(root, stop_at_step=3, max_steps=5, ckpt_every=1)
    (newest,) = root.glob("models/checkpoints/*/ckpt-0000003.pt")
    newest.write_bytes(newest.read_bytes()[:len(newest.read_bytes()) // 2])  # a disk that filled up mid-copy
    capsys.readouterr()
    resumed, metrics = run_fit(root, max_steps=5, ckpt_every=1)
    err = capsys.readouterr().err
    assert "ckpt-0000003.pt is unreadable" in err and "trying the previous one" in err
    assert metrics["resumed_from"] == 2 and metrics["steps"] == 5
    assert torch.equal(param_vector(straight.model), param_vector(resumed.model))
