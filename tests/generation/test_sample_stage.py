"""The sample stage library: which pieces it makes, the manifest contract, continuations from test shards."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import symusic

from mozart.config import SampleConfig
from mozart.generation.sample_stage import run_sample
from mozart.data.tokenize import encode_score
from sampling_helpers import one_thread, make_model_dir, scale_score, tokenizer  # noqa: F401 (autouse fixture)

SAMPLE_KEYS = {"id", "kind", "composer", "composer_id", "cfg_scale", "temperature", "top_k", "top_p",
               "repetition_penalty", "bpm", "n_bars", "n_tokens", "seconds", "decodable", "path", "token_ids",
               "prompt_piece_id", "prompt_bars", "target_bars", "stop_reason", "end"}
CFG = SampleConfig(cfg_scale=1.5, n_top_composers=2, n_per_composer=1, bars=2, n_prompts=1, prompt_bars=2, continuation_bars=4,
                   batch_size=4, max_tokens=3000, device="cpu")


@pytest.fixture(scope="module")
def stage_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sample")
    tok = tokenizer()
    pieces = [("Bach/a", "Bach", 1, "train", 6), ("Chopin/b", "Chopin", 2, "test", 1),  # 1 bar: too short
              ("Chopin/c", "Chopin", 2, "test", 5), ("Mozart/d", "Mozart", 3, "val", 5)]
    tokens = [encode_score(tok, scale_score(n_bars, seed=i)) for i, (*_, n_bars) in enumerate(pieces)]
    tokens_dir, prepared_dir = root / "tokens", root / "prepared"
    tokens_dir.mkdir()
    prepared_dir.mkdir()
    pq.write_table(pa.table({"piece_id": [p[0] for p in pieces], "composer": [p[1] for p in pieces],
                             "transpose": pa.array([0] * 4, pa.int8()), "tokens": pa.array(tokens, pa.list_(pa.uint16())),
                             "n_tokens": pa.array([len(t) for t in tokens], pa.int32())}),
                   tokens_dir / "shard-00000.parquet")
    pq.write_table(pa.table({"piece_id": [p[0] for p in pieces], "work_id": [p[0] for p in pieces],
                             "composer": [p[1] for p in pieces], "composer_id": [p[2] for p in pieces],
                             "split": [p[3] for p in pieces], "transpose": [0] * 4,
                             "n_tokens": [len(t) for t in tokens], "shard": ["shard-00000.parquet"] * 4,
                             "row": [0, 1, 2, 3]}), prepared_dir / "metadata.parquet")
    return {"model": make_model_dir(root / "m", context=128), "tokens": tokens_dir, "prepared": prepared_dir,
            "samples": root / "samples", "tok_rows": tokens}


def _run(dirs, cfg=CFG, seed=7):
    return run_sample(cfg, seed, dirs["model"], dirs["prepared"], dirs["tokens"], dirs["samples"], progress=False)


def test_sample_stage_writes_the_contracted_manifest(stage_dirs):
    (stage_dirs["samples"]).mkdir(exist_ok=True)
    (stage_dirs["samples"] / "stale.mid").write_bytes(b"old")
    metrics = _run(stage_dirs)
    samples_dir = stage_dirs["samples"]
    assert not (samples_dir / "stale.mid").exists()  # the folder is replaced whole
    manifest = json.loads((samples_dir / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 7 and manifest["settings"]["bars"] == 2
    assert "model_dir" in manifest["settings"]
    samples = manifest["samples"]
    for s in samples:
        assert set(s) == SAMPLE_KEYS
        assert s["decodable"] and symusic.Score(str(samples_dir / s["path"])).note_num() > 0
    free = [(s["composer"], s["composer_id"], s["cfg_scale"]) for s in samples if s["kind"] == "free"]
    # the 2 largest composers (Chopin 30, Bach 12 pieces) with and without guidance, unconditional without
    assert sorted(free) == sorted([("Chopin", 2, 1.5), ("Chopin", 2, 1.0), ("Bach", 1, 1.5), ("Bach", 1, 1.0),
                                   ("unconditional", 0, 1.0)])
    assert all(s["n_bars"] == 2 for s in samples if s["kind"] == "free")
    # sample.end (default on): every piece closes by EOS at its length
    assert all(s["stop_reason"] == "eos" and s["end"] and s["n_bars"] == s["target_bars"] for s in samples)
    assert metrics["n_samples"] == len(samples) == 6 and metrics["decodable_fraction"] == 1.0
    assert metrics["tokens_per_s"] > 0 and metrics["mean_bars"] == pytest.approx((5 * 2 + 4) / 6)


def test_continuation_comes_from_a_long_enough_test_piece(stage_dirs):
    _run(stage_dirs)
    manifest = json.loads((stage_dirs["samples"] / "manifest.json").read_text())
    (cont,) = [s for s in manifest["samples"] if s["kind"] == "continuation"]
    assert cont["prompt_piece_id"] == "Chopin/c" and cont["prompt_bars"] == 2 and cont["composer_id"] == 2
    tok = tokenizer()
    source = stage_dirs["tok_rows"][2]
    third_bar = [i for i, t in enumerate(source) if t == tok["Bar_None"]][2]
    assert cont["token_ids"][: third_bar + 2] == [tok["BOS_None"], *source[: third_bar + 1]]  # prompt kept exactly
    assert cont["n_bars"] == 4 and cont["cfg_scale"] == 1.5


def test_sample_stage_is_reproducible_and_honours_the_composer_list(stage_dirs):
    first = json.loads((_run(stage_dirs, seed=3) and stage_dirs["samples"] / "manifest.json").read_text())
    again = json.loads((_run(stage_dirs, seed=3) and stage_dirs["samples"] / "manifest.json").read_text())
    assert [s["token_ids"] for s in first["samples"]] == [s["token_ids"] for s in again["samples"]]
    cfg = SampleConfig(**{**CFG.__dict__, "composers": ["mozart"], "n_prompts": 0, "cfg_scale": 2.0})
    _run(stage_dirs, cfg)
    samples = json.loads((stage_dirs["samples"] / "manifest.json").read_text())["samples"]
    assert sorted((s["composer"], s["cfg_scale"]) for s in samples) == [("Mozart", 1.0), ("Mozart", 2.0)]
