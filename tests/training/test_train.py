"""Training data crops, AMP choice, optimizer groups, and one tiny end-to-end train run with its outputs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mozart.data.crops import CropSampler, TrainData, Vocab
from mozart.data.store import TokenStore, VocabInfo, write_store
from mozart.errors import ConfigError, DataError
from mozart.model.gpt import GPTConfig, MozartGPT, load_model
from mozart.training.trainer import TrainPaths, make_optimizer, train
from train_helpers import checkpoint_files, make_corpus, non_pad_targets, tiny_configs

VOCAB = Vocab(size=50, pad_id=0, bos_id=1, eos_id=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def data(corpus):
    paths = TrainPaths.under(corpus)
    return TrainData.load(paths.tokens_dir, paths.prepared_dir)


def sampler_of(tmp_path, pieces: list, composer_ids: list[int]) -> CropSampler:
    """A CropSampler over a one-split token store written under tmp_path."""
    write_store(tmp_path, ["train"] * len(pieces), pieces, composer_ids, VocabInfo(50, 0, 1, 2, {}))
    return CropSampler(TokenStore(tmp_path, "train"), VOCAB)


def test_pieces_get_bos_eos_and_short_ones_are_padded(tmp_path):
    sampler = sampler_of(tmp_path, [[10, 11, 12]], [1])
    crops, composer_ids = sampler.crops(np.random.default_rng(0), 2, seq_len=8)
    assert crops.shape == (2, 9) and composer_ids.tolist() == [1, 1]
    assert crops[0].tolist() == [1, 10, 11, 12, 2, 0, 0, 0, 0]


def test_long_pieces_are_cropped_inside_the_piece_and_sampled_by_length(tmp_path):
    sampler = sampler_of(tmp_path, [[5], np.arange(100, 1100)], [1, 2])
    crops, composer_ids = sampler.crops(np.random.default_rng(0), 400, seq_len=16)
    from_long = composer_ids == 2
    assert 0.95 < from_long.float().mean() < 1  # 1002 vs 3 tokens: proportional to length
    assert (crops[~from_long][:, :3] == torch.tensor([1, 5, 2])).all()
    starts = set()
    for crop in crops[from_long]:
        body = crop[1:] if crop[0] == VOCAB.bos_id else crop  # BOS opens the piece, EOS closes it
        body = body[:-1] if body[-1] == VOCAB.eos_id else body
        assert torch.equal(body, torch.arange(int(body[0]), int(body[0]) + len(body)))  # contiguous, never padded
        starts.add(int(crop[0]))
    assert len(starts) > 100  # crop starts spread over the piece


def test_every_crop_is_a_window_of_bos_piece_eos_with_every_start_reachable(tmp_path):
    rng = np.random.default_rng(1)
    pieces = [rng.integers(3, 50, size=n) for n in (1, 7, 15, 16, 17, 40)]
    sampler = sampler_of(tmp_path, pieces, list(range(1, len(pieces) + 1)))  # composer id = piece number
    crops, composer_ids = sampler.crops(np.random.default_rng(0), 3000, seq_len=15)
    seen: dict[int, set] = {}
    for crop, cid in zip(crops.numpy(), composer_ids.tolist()):
        full = np.concatenate([[1], pieces[cid - 1], [2]])
        windows = [np.pad(full[s:s + 16], (0, 16 - len(full[s:s + 16]))) for s in range(max(1, len(full) - 15))]
        matches = [s for s, w in enumerate(windows) if np.array_equal(w, crop)]
        assert matches, (cid, crop)
        seen.setdefault(cid, set()).update(matches)
    assert all(seen[cid] == set(range(max(1, len(pieces[cid - 1]) + 2 - 15))) for cid in seen)
    assert set(seen) == set(range(1, len(pieces) + 1))


def test_train_crops_are_transposed_within_the_pitch_range_and_val_crops_never(tmp_path):
    root = make_corpus(tmp_path)
    paths = TrainPaths.under(root)
    meta = json.loads((paths.prepared_dir / "store.json").read_text())
    (paths.prepared_dir / "store.json").write_text(json.dumps({**meta, "transpose": [-5, 7]}))
    data = TrainData.load(paths.tokens_dir, paths.prepared_dir)
    plain = TrainData.load(paths.tokens_dir, make_corpus(tmp_path / "plain").joinpath("data/prepared"))
    pitch_of = data.train.transposer.pitch_of
    shifts = set()
    for step in range(20):
        x, _, _ = data.train_batch(0, step, 0, 0, 8, 16, 0.0)
        x0, _, _ = plain.train_batch(0, step, 0, 0, 8, 16, 0.0)
        for row, row0 in zip(x.numpy(), x0.numpy()):
            is_pitch = pitch_of[row0] >= 0
            assert ((pitch_of[row] >= 0) == is_pitch).all() and (row[~is_pitch] == row0[~is_pitch]).all()
            shifts |= set((pitch_of[row[is_pitch]] - pitch_of[row0[is_pitch]]).tolist())
            assert (pitch_of[row[is_pitch]] >= 21).all() and (pitch_of[row[is_pitch]] <= 109).all()
    assert shifts == {-5, 0, 7}  # per crop one offset, all drawn
    for (x, _, _), (x0, _, _) in zip(data.val_batches(0, 2, 4, 16), plain.val_batches(0, 2, 4, 16)):
        assert torch.equal(x, x0)


def test_train_batches_are_a_pure_function_of_seed_step_rank(data):
    a = data.train_batch(seed=1, step=5, rank=0, micro=0, batch_size=4, seq_len=16, p_uncond=0.0)
    b = data.train_batch(seed=1, step=5, rank=0, micro=0, batch_size=4, seq_len=16, p_uncond=0.0)
    other_rank = data.train_batch(seed=1, step=5, rank=1, micro=0, batch_size=4, seq_len=16, p_uncond=0.0)
    other_step = data.train_batch(seed=1, step=6, rank=0, micro=0, batch_size=4, seq_len=16, p_uncond=0.0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], other_rank[0])
    assert not torch.equal(a[0], other_step[0])
    x, y, _ = a
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_p_uncond_drops_composer_ids(data):
    kept = torch.cat([data.train_batch(0, s, 0, 0, 8, 16, p_uncond=0.0)[2] for s in range(10)])
    dropped = torch.cat([data.train_batch(0, s, 0, 0, 8, 16, p_uncond=1.0)[2] for s in range(10)])
    half = torch.cat([data.train_batch(0, s, 0, 0, 8, 16, p_uncond=0.5)[2] for s in range(10)])
    assert (kept > 0).all() and (dropped == 0).all()
    assert 0 < (half == 0).sum() < len(half)


def test_val_batches_are_fixed_and_use_val_pieces(data):
    first = data.val_batches(seed=3, n_batches=2, batch_size=4, seq_len=16)
    again = data.val_batches(seed=3, n_batches=2, batch_size=4, seq_len=16)
    assert all(torch.equal(a, b) for fa, fb in zip(first, again) for a, b in zip(fa, fb))
    assert len(data.val) == 2 and len(data.train) == 10


def test_no_weight_decay_on_biases_layernorm_embeddings():
    model = MozartGPT(GPTConfig(n_layer=1, d_model=16, n_head=2, d_ff=32, context=16, vocab_size=20, n_composers=3))
    _, cfg = tiny_configs()
    decay_group, no_decay_group = make_optimizer(model, cfg, torch.device("cpu")).param_groups
    decayed = {id(p) for p in decay_group["params"]}
    for name, p in model.named_parameters():
        expect = p.dim() >= 2 and not name.startswith(("wte", "wpe", "wce"))
        assert (id(p) in decayed) == expect, name
    assert decay_group["weight_decay"] == cfg.weight_decay and no_decay_group["weight_decay"] == 0.0


def test_tiny_run_writes_outputs_and_learns(corpus):
    model_cfg, train_cfg = tiny_configs(max_steps=8, amp=True)  # bf16 autocast on CPU
    metrics = train(model_cfg, train_cfg, 7, TrainPaths.under(corpus))
    saved = json.loads((corpus / "metrics/train.json").read_text())
    for key in ("train_loss", "val_loss", "val_ppl", "val_bits_per_token", "steps", "tokens_seen", "tokens_per_s",
                "params"):
        assert key in saved
    assert saved["steps"] == 8 and saved["tokens_seen"] == non_pad_targets(corpus, steps=8)
    assert saved["tokens_seen"] < 8 * 4 * 32 * 2  # PAD targets are not counted...
    assert saved["padded_tokens_per_s"] > saved["tokens_per_s"]  # ...except in the padded throughput
    assert saved["val_ppl"] == pytest.approx(math.exp(saved["val_loss"]))
    assert saved["val_bits_per_token"] == pytest.approx(saved["val_loss"] / math.log(2))
    model = load_model(corpus / "models/final")
    assert saved["params"] == model.num_params() == metrics["params"]
    assert saved["val_loss"] < math.log(model.config.vocab_size)  # better than uniform guessing
    curve = (corpus / "metrics/train_curve.tsv").read_text().splitlines()
    assert curve[0] == "step\ttrain_loss\tval_loss\tlr"
    assert [int(r.split("\t")[0]) for r in curve[1:]] == [4, 8]
    assert sorted(p.name for p in (corpus / "models/final").iterdir()) == [
        "composers.json", "config.json", "model.safetensors", "tokenizer.json"]


def test_max_minutes_stops_after_a_checkpoint_and_still_writes_the_model(tmp_path):
    root = make_corpus(tmp_path)
    model_cfg, train_cfg = tiny_configs(max_steps=50, ckpt_every=100, max_minutes=1e-9)
    metrics = train(model_cfg, train_cfg, 7, TrainPaths.under(root))
    assert metrics["stopped_early"] and metrics["steps"] == 1
    assert list(checkpoint_files(root).values()) == [["ckpt-0000001.pt"]]
    assert (root / "models/final/model.safetensors").is_file()


def test_seq_len_longer_than_context_is_a_config_error(corpus):
    model_cfg, train_cfg = tiny_configs(seq_len=128)
    with pytest.raises(ConfigError, match="seq_len"):
        train(model_cfg, train_cfg, 7, TrainPaths.under(corpus))


@pytest.mark.parametrize("override", [dict(eval_batches=0), dict(grad_accum=0), dict(threads=-1)])
def test_impossible_train_settings_are_config_errors_before_training(override):
    with pytest.raises(ConfigError, match=f"train.{next(iter(override))}"):
        tiny_configs(**override)  # a library caller gets params.yaml's checks when the config is made


def test_missing_prepared_data_is_a_data_error(tmp_path):
    model_cfg, train_cfg = tiny_configs()
    with pytest.raises(DataError, match="prepare"):
        train(model_cfg, train_cfg, 7, TrainPaths.under(tmp_path))
