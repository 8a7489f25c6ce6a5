"""Helpers for the `mozart serve` tests: an app on a tiny random model, a job waiter, and the SOUNDFONT check."""
from __future__ import annotations

import time
from pathlib import Path

from mozart.generation.engine import load_model_dir
from mozart.serve.app import create_app
from render_helpers import SOUNDFONT
from sampling_helpers import make_model_dir

__all__ = ["SOUNDFONT", "serve_app", "wait_for_job"]


def serve_app(root: Path):
    """(Flask app, its output folder) for a tiny random model directory built under `root`."""
    model_dir = make_model_dir(root / "model-src", context=256)
    out_dir = root / "out"
    return create_app(load_model_dir(model_dir, "cpu", precision="fp32"), out_dir, str(SOUNDFONT)), out_dir


def wait_for_job(client, job_id: str, timeout_s: float = 120.0) -> dict:
    """Poll /api/jobs/<id> until the job is done or failed; the last status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").get_json()
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout_s} s")
