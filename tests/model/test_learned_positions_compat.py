"""A model directory saved before RoPE (issue 13) has no `positions` key: it loads as a learned-position model and
generates byte for byte what the code that saved it generated.

tests/fixtures/learned-model was written by commit a18cd38 (`make_model_dir(context=64, seed=3)`), and
tests/fixtures/learned-model-output holds what that commit's `mozart generate` wrote for 12 bars (800 and 1,030
new tokens: far past the context of 64, so the drop-half-and-refill path is in the comparison too)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mozart.cli import main
from mozart.model.gpt import load_model
from sampling_helpers import one_thread  # noqa: F401 (autouse fixture)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = FIXTURES / "learned-model"
EXPECTED = FIXTURES / "learned-model-output"


def test_a_config_without_positions_loads_as_learned_positions():
    assert "positions" not in json.loads((MODEL / "config.json").read_text())
    model = load_model(MODEL)
    assert model.config.positions == "learned"
    assert model.wpe.weight.shape == (64, 32)
    assert not hasattr(model, "rotary")


@pytest.mark.parametrize("composer,seed", [("bach", 7), ("chopin", 11)])
@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_an_old_learned_position_model_generates_byte_identical_midi(tmp_path, capsys, composer, seed, precision):
    model_dir = shutil.copytree(MODEL, tmp_path / "model")
    out = tmp_path / "piece.mid"
    code = main(["generate", "--model", str(model_dir), "--composer", composer, "--bars", "12", "--seed", str(seed),
                 "--cfg-scale", "1.5",  # the default when the fixture was written (now 3, QUALITY.md)
                 "--precision", precision, "--out", str(out)])
    capsys.readouterr()
    assert code == 0
    assert out.read_bytes() == (EXPECTED / f"{composer}-{precision}.mid").read_bytes()
