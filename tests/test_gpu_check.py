"""`bash benchmarks/gpu_check.sh --dry-run`: every part of the GPU check runs on CPU and fills its one table."""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_dry_run_writes_one_table_with_every_part(tmp_path):
    out = tmp_path / "gpu_check.md"
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.strip() in done.stdout  # printed and written
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    assert len(rows) == 1 + 4 + 4  # CUDA tests, 4 training variants, 4 generation settings
    assert re.search(r"CUDA tests .*\d+ (skipped|passed)", rows[0])  # the cuda-marked tests were collected
    settings = [row.split(" | ")[1] for row in rows[1:]]
    assert settings == ["grad checkpointing off, compile off", "grad checkpointing on, compile off",
                        "grad checkpointing off, compile on", "grad checkpointing on, compile on",
                        "batch 1, no CFG", "batch 1, CFG 1.5", "batch 8, no CFG", "batch 8, CFG 1.5"]
    speeds = [float(row.split(" | ")[2].replace(",", "")) for row in rows[1:]]
    assert all(s > 0 for s in speeds)


def test_gpu_check_without_a_gpu_or_dry_run_says_what_to_do():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the full check would run")
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "--dry-run" in done.stderr and "Traceback" not in done.stderr
