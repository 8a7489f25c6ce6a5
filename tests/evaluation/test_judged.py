"""The judged set (mozart/evaluation/judged.py): Wilson intervals, style accuracy that tells a right composer from a
shuffled one, and a generated set of the promised size that a fixed seed reproduces."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from metrics_helpers import make_score, styled_notes
from mozart.config import EvaluateConfig, SampleConfig
from mozart.evaluation.judged import (JudgedPiece, JudgedSet, generate_judged, guidance_scales, judge,
                                      judged_composers, scale_key, wilson_interval)
from mozart.evaluation.metrics import piece_metrics
from sampling_helpers import COMPOSERS, make_model_dir, one_thread  # noqa: F401 (one_thread: autouse fixture)

NAMES = ["<unconditional>", "Alpha", "Beta", "Gamma"]


@pytest.mark.parametrize("correct, n, low, high", [(8, 16, 0.280, 0.720), (0, 10, 0.0, 0.2775),
                                                   (10, 10, 0.7225, 1.0), (1, 10, 0.0179, 0.4042),
                                                   (81, 263, 0.2553, 0.3662)])
def test_wilson_interval_matches_published_values(correct, n, low, high):
    got = wilson_interval(correct, n)
    assert got == pytest.approx((low, high), abs=6e-4)
    assert got[0] <= correct / n <= got[1]


def test_wilson_interval_of_no_trials_is_undefined():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_guidance_scales_are_no_guidance_the_sample_scale_and_the_sweep_ascending():
    sweep = EvaluateConfig(cfg_sweep=[3.0, 1.5, 2.0])
    assert guidance_scales(sweep, SampleConfig(cfg_scale=1.5)) == [1.0, 1.5, 2.0, 3.0]
    assert guidance_scales(EvaluateConfig(), SampleConfig(cfg_scale=1.0)) == [1.0]
    assert scale_key(1.0) == "cfg_1" and scale_key(1.5) == "cfg_1p5"


def _toy_corpus(seed: int = 0, n_train: int = 8, n_test: int = 16):
    """Train and test metadata rows of three toy composers (ids 1-3) and their decoded scores, by row index."""
    rng = np.random.default_rng(seed)
    rows, decoded = [], {}
    for composer_id in (1, 2, 3):
        for split, n in (("train", n_train), ("test", n_test)):
            for _ in range(n):
                decoded[len(rows)] = make_score(styled_notes(rng, composer_id - 1, int(rng.integers(8, 13))))
                rows.append({"composer_id": composer_id, "split": split, "transpose": 0})
    meta = pd.DataFrame(rows)
    return meta[meta["split"] == "train"], meta[meta["split"] == "test"], decoded


def _copies(test, decoded, labels, scale: float = 1.0) -> list[JudgedPiece]:
    """Judged 'pieces' that are the real test pieces, each labelled with the composer id given in `labels`."""
    return [JudgedPiece(cid, NAMES[cid], scale, 0, [], decoded[idx], True, "", 0, "bars")
            for idx, cid in zip(test.index, labels)]


def _judge(pieces, train, test, decoded, real_rows):
    composers = [(1, "Alpha"), (2, "Beta"), (3, "Gamma")]
    judged = JudgedSet(composers, [1.0], 16, pieces)
    return judge(EvaluateConfig(), SampleConfig(bars=4, cfg_scale=1.0), judged, train, test, decoded, real_rows, 0)


def test_copies_of_the_right_composers_pieces_are_judged_right_and_shuffled_ones_at_chance():
    train, test, decoded = _toy_corpus()
    real_rows = [piece_metrics(decoded[i]) for i in test.index]
    right = _judge(_copies(test, decoded, test["composer_id"]), train, test, decoded, real_rows)
    at = right.section["cfg_1"]
    chance = right.section["chance"]
    assert chance == pytest.approx(1 / 3) and right.section["classifier"]["classes"] == 3
    assert at["n"] == 48 and at["style_accuracy"] >= 0.9 and at["style_ci_low"] > chance
    # the generated set is the real test set itself: no gap
    assert at["gap_h1"] == pytest.approx(0) and at["gap_gs_rel"] == pytest.approx(0)
    assert right.section["classifier"]["piece_accuracy"] >= 0.9 and right.section["classifier"]["piece_n"] == 48
    assert right.section["majority_rate"] == pytest.approx(1 / 3)  # a balanced set: always naming one is chance

    shuffled = np.random.default_rng(1).permutation(test["composer_id"].to_numpy())
    wrong = _judge(_copies(test, decoded, shuffled), train, test, decoded, real_rows).section["cfg_1"]
    assert wrong["style_ci_low"] <= chance <= wrong["style_ci_high"]
    assert wrong["style_accuracy"] < at["style_ci_low"]
    # the real held-out pieces are the same in both runs: the classifier is as good as before
    assert right.flat["real_test_style_accuracy"] >= 0.9


def test_judged_table_has_one_row_per_composer_and_scale():
    train, test, decoded = _toy_corpus(n_test=4)
    pieces = _copies(test, decoded, test["composer_id"])
    report = _judge(pieces, train, test, decoded, [piece_metrics(decoded[i]) for i in test.index])
    lines = report.tsv.strip().split("\n")
    assert lines[0].split("\t") == ["composer", "cfg_scale", "n", "correct", "accuracy", "ci_low", "ci_high"]
    rows = [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]
    assert [r["composer"] for r in rows] == ["Alpha", "Beta", "Gamma"] and all(r["n"] == "4" for r in rows)
    for r in rows:
        assert float(r["ci_low"]) <= int(r["correct"]) / 4 <= float(r["ci_high"])
    assert report.flat["n_style_cfg"] == report.flat["n_style_nocfg"] == 12  # cfg_scale 1.0: the same scale


def _meta() -> pd.DataFrame:
    """Train counts Mozart 5, Bach 3, Chopin 1 (Chopin has more pieces in composers.json and in the test split)."""
    rows = [(3, "train")] * 5 + [(1, "train")] * 3 + [(2, "train")] + [(2, "test")] * 9 + [(0, "train")] * 9
    return pd.DataFrame([{"composer_id": c, "split": s, "transpose": 0} for c, s in rows])


def test_judged_composers_are_the_largest_by_train_pieces_without_the_unconditional_id():
    assert judged_composers(_meta(), COMPOSERS, None, 2) == [(3, "Mozart"), (1, "Bach")]
    assert judged_composers(_meta(), COMPOSERS, 3, 6) == [(1, "Bach"), (2, "Chopin")]  # 3 = OTHER here


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("judged-model"), context=64)


def _generate(model_dir, out, seed: int):
    cfg = EvaluateConfig(n_per_composer=3, cfg_sweep=[2.0], device="cpu")
    sample = SampleConfig(bars=2, batch_size=4, max_tokens=48, cfg_scale=1.5)
    chosen = judged_composers(_meta(), COMPOSERS, None, 2)
    return generate_judged(cfg, sample, seed, model_dir, chosen, out, progress=False)


def test_judged_set_has_n_per_composer_pieces_per_composer_and_scale_and_a_seed_reproduces_it(model_dir, tmp_path):
    first = _generate(model_dir, tmp_path / "a", seed=5)
    assert first.scales == [1.0, 1.5, 2.0]
    by_scale = first.by_scale()
    for scale, pieces in by_scale.items():
        assert sorted(p.composer for p in pieces) == ["Bach"] * 3 + ["Mozart"] * 3
        assert all(p.token_ids and p.score is not None and p.cfg_scale == scale for p in pieces)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(manifest["pieces"]) == 18
    for p in manifest["pieces"]:
        assert {"composer", "composer_id", "cfg_scale", "seed", "path", "decodable", "n_tokens"} <= set(p)
        assert (tmp_path / "a" / p["path"]).is_file()
    again = _generate(model_dir, tmp_path / "b", seed=5)
    assert [p.token_ids for p in again.pieces] == [p.token_ids for p in first.pieces]
    assert (tmp_path / "b" / "manifest.json").read_text() == (tmp_path / "a" / "manifest.json").read_text()
    other = _generate(model_dir, tmp_path / "c", seed=6)
    assert [p.token_ids for p in other.pieces] != [p.token_ids for p in first.pieces]
