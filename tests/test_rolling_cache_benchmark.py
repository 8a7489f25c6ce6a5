"""`python benchmarks/rolling_cache.py --smoke`: the rolling-cache benchmark runs end to end on tiny random models and
a synthetic store, and fills both of its tables."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_the_rolling_cache_benchmark_smoke_run_fills_its_speed_and_quality_tables(tmp_path):
    out = tmp_path / "rolling_cache.md"
    done = subprocess.run([sys.executable, "benchmarks/rolling_cache.py", "--smoke", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.strip() in done.stdout  # printed and written
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert [r[0] for r in rows] == ["| RoPE, within the context (plain KV cache)", "| RoPE, rolling KV cache",
                                    "| RoPE, refill", "| learned positions, refill"] + \
        ["| RoPE, rolling KV cache", "| RoPE, refill", "| learned positions, refill"]
    assert [int(r[1]) for r in rows[:4]] == [63, 256, 256, 256]  # context 64: 4 contexts past it
    assert all(float(r[2]) > 0 for r in rows[:4])
    bits = [float(r[1]) for r in rows[4:]]
    assert all(0 < b < 12 for b in bits)  # random models on a ~220-token vocabulary: near log2(220) = 7.8
    assert "Target: rolling at 4x the context" in text
