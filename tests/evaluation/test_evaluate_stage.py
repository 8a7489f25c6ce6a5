"""The evaluate stage on a tiny workspace: a random model, two toy composers, fake samples, a small judged set."""
from __future__ import annotations

import json
import math

import pytest

from metrics_helpers import build_stage_workspace, load_json, read_tsv
from stage_helpers import set_params
from mozart.config import EvaluateConfig, SampleConfig
from mozart.errors import DataError
from mozart.evaluation.stage import run
from mozart.paths import EvaluatePaths

REQUIRED = ["generated.h1", "generated.h4", "generated.gs", "real.h1", "real.h4", "real.gs", "gap.h1", "gap.h4",
            "gap.gs", "test_bits_per_token", "style_accuracy_cfg", "style_accuracy_nocfg", "decodable_fraction",
            "real_test_style_accuracy", "style_chance", "style_accuracy_cfg_ci_low", "style_accuracy_cfg_ci_high",
            "style_accuracy_nocfg_ci_low", "style_accuracy_nocfg_ci_high", "judged/cfg_1/style_accuracy",
            "judged/cfg_1p5/style_accuracy", "judged/cfg_1p5/decodable_fraction", "judged/cfg_1p5/gap_h1_rel",
            "judged/classifier/piece_accuracy", "judged/chance", "judged/majority_rate",
            "judged/cfg_1/memorization_copy4_share", "judged/cfg_1p5/memorization_max_bars", "judged/cfg_1/si_short",
            "judged/cfg_1p5/si_n"]
EVALUATE = EvaluateConfig(max_real_pieces=5, nll_batches=3, device="cpu", n_per_composer=3)
SAMPLE = SampleConfig(bars=2, batch_size=4, max_tokens=96, cfg_scale=1.5)  # a random model: short pieces keep the test quick
# the same small judged set for the stage script, which reads params.yaml
SMALL_PARAMS = {"evaluate.n_per_composer": 3, "sample.cfg_scale": 1.5, "evaluate.device": "cpu", "sample.bars": 2, "sample.batch_size": 4,
                "sample.max_tokens": 96}


def _get(d: dict, dotted: str):
    """d["a"]["b"] for "a.b" or "a/b"."""
    for part in dotted.split("/" if "/" in dotted else "."):
        d = d[part]
    return d


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    info = build_stage_workspace(root)
    result = run(EVALUATE, 1337, EvaluatePaths.under(root), SAMPLE)
    return root, info, result


def test_the_judged_set_is_checked_for_copies_and_structure_at_every_scale(workspace):
    _, _, result = workspace
    for key in ("cfg_1", "cfg_1p5"):
        at = result["judged"][key]
        assert 0 <= at["memorization_copy2_share"] <= 1 and at["memorization_max_bars"] >= 0
        assert at["n"] == 3 * len(result["judged"]["composers"].split(", "))  # SI's count did not replace it
        assert 0 <= at["si_n"] <= at["n"]


def test_eval_json_holds_every_key(workspace):
    root, _, result = workspace
    written = load_json(root / "metrics" / "eval.json")
    for key in REQUIRED:
        value = _get(written, key)
        assert isinstance(value, (int, float)) and math.isfinite(value), key
    for key in ("h1", "h4", "gs"):
        assert written["gap"][key] == pytest.approx(abs(written["generated"][key] - written["real"][key]))
    assert not list((root / "metrics").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_values_are_consistent_with_the_workspace(workspace):
    root, info, result = workspace
    samples = info["samples"]
    assert result["decodable_fraction"] == pytest.approx(sum(s["decodable"] for s in samples) / len(samples))
    assert result["generated"]["n_pieces"] == sum(s["decodable"] for s in samples)
    assert result["real"]["n_pieces"] == 2  # one test piece per composer
    # real pieces are cropped to the median bar count of the generated samples
    assert result["real"]["n_bars"] <= result["crop_bars"]
    # a random model is close to uniform over the vocabulary: about log2(vocab) bits per token
    vocab = json.loads((root / "models" / "final" / "config.json").read_text())["vocab_size"]
    assert 0.5 * math.log2(vocab) < result["test_bits_per_token"] < 2 * math.log2(vocab)
    assert result["style_chance"] == pytest.approx(0.5) and result["style_classes"] == 2
    # style is judged on the judged set: 2 composers x n_per_composer pieces per scale
    assert result["n_style_cfg"] == result["n_style_nocfg"] == 2 * EVALUATE.n_per_composer
    assert result["style_accuracy_cfg_ci_low"] <= result["style_accuracy_cfg"] <= result["style_accuracy_cfg_ci_high"]
    # the toy composers are trivially separable: the real held-out pieces are all named correctly
    assert result["real_test_style_accuracy"] == 1.0 and result["real_test_style_accuracy_piece"] == 1.0
    assert sorted(k for k in result["judged"] if k.startswith("cfg_")) == ["cfg_1", "cfg_1p5"]


def test_judged_set_is_written_beside_the_metrics(workspace):
    root, info, result = workspace
    manifest = load_json(root / "data" / "judged" / "manifest.json")
    pieces = manifest["pieces"]
    assert len(pieces) == 2 * 2 * EVALUATE.n_per_composer  # 2 composers x 2 scales
    assert {p["composer"] for p in pieces} == {"Alpha", "Beta"} and {p["cfg_scale"] for p in pieces} == {1.0, 1.5}
    assert all((root / "data" / "judged" / p["path"]).is_file() for p in pieces)
    rows = read_tsv(root / "metrics" / "eval_judged.tsv")
    assert len(rows) == 4 and all(int(r["n"]) == EVALUATE.n_per_composer for r in rows)
    cfg_rows = [r for r in rows if float(r["cfg_scale"]) == 1.5]
    assert sum(int(r["correct"]) for r in cfg_rows) == round(result["style_accuracy_cfg"] * result["n_style_cfg"])


def test_structureness_covers_the_readable_free_samples_and_the_real_test_pieces(workspace):
    root, info, result = workspace
    written = load_json(root / "metrics" / "eval.json")["structure"]
    free = [s for s in info["samples"] if s["kind"] == "free"]
    assert written["generated"]["n"] == sum(s["decodable"] for s in free)  # the unreadable sample is left out
    assert written["real"]["n"] == 2
    for group, prefix in (("generated", ""), ("real", "real_")):
        for key in ("si_short", "si_mid", "si_long"):
            assert 0.0 <= written[group][key] <= 1.0
            assert result[prefix + key] == written[group][key]


def test_structureness_is_skipped_when_switched_off():
    from mozart.evaluation.stage import structure_phase

    assert structure_phase(EvaluateConfig(structure=False), None, None, None, [], 8) == {}


def test_composer_table(workspace):
    root, info, _ = workspace
    rows = read_tsv(root / "metrics" / "eval_composers.tsv")
    assert [r["composer"] for r in rows] == ["Alpha", "Beta"]
    for col in ("composer", "style_accuracy", "test_bits_per_token", "n_generated", "h1", "h4", "gs"):
        assert all(col in r for r in rows)
    n_expected = {name: sum(s["composer"] == name for s in info["samples"]) for name in ("Alpha", "Beta")}
    assert {r["composer"]: int(r["n_generated"]) for r in rows} == n_expected
    assert all(float(r["test_bits_per_token"]) > 0 for r in rows)


def test_missing_samples_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="manifest.json is missing"):
        run(EvaluateConfig(), 0, EvaluatePaths.under(tmp_path), SampleConfig())


def test_stage_script_runs_from_a_repository_copy(workspace, repo_root):
    """`python stages/evaluate.py` as DVC runs it: params.yaml + stages/ beside the workspace's data."""
    import os
    import shutil
    import subprocess
    import sys

    root, _, _ = workspace
    shutil.copytree(repo_root / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    shutil.copyfile(repo_root / "params.yaml", root / "params.yaml")
    set_params(root, SMALL_PARAMS)
    (root / "metrics" / "eval.json").unlink()
    env = {**os.environ, "MOZART_TRACKING": "0", "PYTHONPATH": str(repo_root)}
    proc = subprocess.run([sys.executable, "stages/evaluate.py"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bits/token" in proc.stdout
    written = load_json(root / "metrics" / "eval.json")
    assert all(isinstance(_get(written, k), (int, float)) for k in REQUIRED)


@pytest.mark.parametrize("bad", [{"grid": 0}, {"nll_batches": 0}, {"max_real_pieces": -1}])
def test_bad_evaluate_params_are_config_errors_when_the_config_is_made(bad):
    from mozart.errors import ConfigError

    with pytest.raises(ConfigError, match=f"evaluate.{next(iter(bad))}"):
        EvaluateConfig(**bad)


def test_memorization_finds_the_planted_copy_and_writes_the_copies_table(workspace):
    from metrics_helpers import COPIED_BARS

    root, info, result = workspace
    rows = {r["sample"]: r for r in read_tsv(root / "metrics" / "eval_copies.tsv")}
    free = [s for s in info["samples"] if s["kind"] == "free"]
    assert set(rows) == {s["id"] for s in free}  # every free sample, continuations left out
    planted = next(s["id"] for s in free if s["composer_id"] == 0)  # the unconditional sample copies Alpha/p0
    assert rows[planted]["copied_bars"] == str(COPIED_BARS) and rows[planted]["train_piece"] == "Alpha/p0"
    assert rows[planted]["train_bar"] == "1" and rows[planted]["sample_bar"] == "1"
    others = [int(r["copied_bars"]) for sid, r in rows.items() if sid != planted]
    assert max(others) <= 1  # random toy pieces share a bar at most
    memo = load_json(root / "metrics" / "eval.json")["memorization"]
    assert memo["generated"]["n_pieces"] == len(free) and memo["generated"]["max_bars"] == COPIED_BARS
    assert result["generated_copy4_share"] == pytest.approx(1 / len(free))
    assert memo["real_test"]["n_pieces"] == 2 and result["real_copy4_share"] == 0.0  # test pieces copy nothing
    assert memo["index"]["pieces"] == 8 and not memo["index"]["capped"]  # 4 train pieces per composer
