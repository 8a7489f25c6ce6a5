"""Fixtures shared by every test file. Test folders mirror the subpackages of mozart/; area-specific helpers live in
tests/<area>_helpers.py (importable from every folder: pyproject.toml puts tests/ on the path)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def shared_corpora() -> Path:
    """../shared/corpora, or skip with the reason when this checkout has no ../shared beside it."""
    corpora = SHARED / "corpora"
    if not corpora.is_dir():
        pytest.skip(f"{corpora} is absent: the shared corpora are only beside developer and CI checkouts")
    return corpora


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip, with the reason, where torch sees no CUDA device."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on a machine with one)")
    for item in cuda_items:
        item.add_marker(skip)
