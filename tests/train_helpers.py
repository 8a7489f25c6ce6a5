"""Tiny training fixtures (a fake tokenized + prepared corpus) and a subprocess entry point for the resume tests.

`python tests/train_helpers.py ROOT N_STEPS [DELAY_S]` trains the tiny config under ROOT (resuming if possible),
sleeping DELAY_S after each step so a test can SIGKILL it mid-run, and saves the final parameters to
ROOT/params.safetensors.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mozart.config import ModelConfig, TrainConfig  # noqa: E402
from mozart.data.store import read_vocab_info, write_store  # noqa: E402

COMPOSERS = ["<unconditional>", "Bach", "Mozart"]


def make_corpus(root: Path, n_pieces: int = 12, seed: int = 0, composers: list[str] = COMPOSERS,
                tokenizer_config: dict | None = None) -> Path:
    """data/tokens + data/prepared under root, shaped like the real stages' outputs (docs/CONTRACTS.md).

    Each composer's pieces repeat a composer-specific motif, so there is something learnable; the first piece of
    each composer is in the val split. `composers` (index = id, 0 = unconditional) and the seed decide the motifs:
    the same seed gives composer k the same motif whatever composers follow it. `tokenizer_config` overrides
    miditok.TokenizerConfig arguments."""
    import miditok

    rng = np.random.default_rng(seed)
    tokens_dir, prepared_dir = root / "data/tokens", root / "data/prepared"
    tokens_dir.mkdir(parents=True, exist_ok=True)
    prepared_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = miditok.REMI(miditok.TokenizerConfig(special_tokens=["PAD", "BOS", "EOS"],
                                                     **(tokenizer_config or {})))
    tokenizer.save(tokens_dir / "tokenizer.json")
    vocab = len(tokenizer)
    n_real = len(composers) - 1
    motifs = {c: rng.integers(3, vocab, size=8) for c in range(1, n_real + 1)}
    rows, meta = [], []
    for i in range(n_pieces):
        composer_id = 1 + i % n_real
        length = int(rng.integers(20, 120))
        tokens = np.resize(motifs[composer_id], length).astype(np.uint16)
        tokens[rng.random(length) < 0.1] = rng.integers(3, vocab)  # a little noise
        split = "val" if i < n_real else "train"
        piece_id = f"{composers[composer_id]}/piece{i:02d}"
        rows.append((piece_id, composers[composer_id], 0, tokens.tolist(), length))
        meta.append(dict(piece_id=piece_id, work_id=piece_id, composer=composers[composer_id],
                         composer_id=composer_id, split=split, transpose=0, n_tokens=length,
                         shard="shard-00000.parquet" if i < 6 else "shard-00001.parquet", row=i if i < 6 else i - 6))
    for shard, part in (("shard-00000.parquet", rows[:6]), ("shard-00001.parquet", rows[6:])):
        table = pa.table({
            "piece_id": [r[0] for r in part], "composer": [r[1] for r in part],
            "transpose": pa.array([r[2] for r in part], pa.int8()),
            "tokens": pa.array([r[3] for r in part], pa.list_(pa.uint16())),
            "n_tokens": pa.array([r[4] for r in part], pa.int32())})
        pq.write_table(table, tokens_dir / shard)
    store_rows = write_store(prepared_dir, [m["split"] for m in meta], [r[3] for r in rows],
                             [m["composer_id"] for m in meta], read_vocab_info(tokens_dir / "tokenizer.json"))
    for m, store_row in zip(meta, store_rows):
        m["store_row"] = store_row
    pd.DataFrame(meta).to_parquet(prepared_dir / "metadata.parquet")
    counts = [0] + [sum(m["composer_id"] == c for m in meta) for c in range(1, n_real + 1)]
    composers_json = {"unconditional_id": 0, "other_id": None, "names": list(composers), "n_pieces": counts,
                      "composer_to_id": {name: c for c, name in enumerate(composers) if c > 0}}
    (prepared_dir / "composers.json").write_text(json.dumps(composers_json))
    return root


def tiny_configs(**train_overrides) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, context=64, dropout=0.1)
    train = dict(seq_len=32, batch_size=4, grad_accum=2, max_steps=8, lr=3e-3, warmup_frac=0.25, eval_every=4,
                 eval_batches=2, ckpt_every=2, grad_checkpointing=False, device="cpu", amp=False)
    train.update(train_overrides)
    return model, TrainConfig(**train)


def checkpoint_files(root: Path) -> dict[str, list[str]]:
    """{run folder name: its checkpoint file names, sorted} under ROOT/models/checkpoints."""
    ckpts = Path(root) / "models/checkpoints"
    return {d.name: sorted(p.name for p in d.glob("ckpt-*.pt")) for d in sorted(ckpts.iterdir()) if d.is_dir()}


def non_pad_targets(root: Path, steps: int, world_size: int = 1, **train_overrides) -> int:
    """The non-PAD targets a tiny run trains on in `steps` steps: what tokens_seen must count."""
    from mozart.data.crops import TrainData
    from mozart.training.trainer import TrainPaths

    _, cfg = tiny_configs(**train_overrides)
    paths = TrainPaths.under(Path(root))
    data = TrainData.load(paths.tokens_dir, paths.prepared_dir)
    return sum(int((data.train_batch(7, step, rank, micro, cfg.batch_size, cfg.seq_len, cfg.p_uncond)[1]
                    != data.vocab.pad_id).sum())
               for step in range(steps) for rank in range(world_size) for micro in range(cfg.grad_accum))


def param_vector(model) -> "torch.Tensor":  # noqa: F821
    import torch

    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _main(argv: list[str]) -> None:
    import torch
    from safetensors.torch import save_file

    from mozart.model.gpt import unwrap
    from mozart.training.trainer import Trainer, TrainPaths

    torch.set_num_threads(1)  # same float reduction order in every process
    root, n_steps = Path(argv[0]), int(argv[1])
    delay = float(argv[2]) if len(argv) > 2 else 0.0
    model_cfg, train_cfg = tiny_configs(max_steps=n_steps, ckpt_every=1)
    trainer = Trainer(model_cfg, train_cfg, 7, TrainPaths.under(root))
    trainer.fit(on_step=lambda step: time.sleep(delay))
    save_file({k: v.contiguous() for k, v in unwrap(trainer.model).state_dict().items() if k != "lm_head.weight"},
              str(root / "params.safetensors"))


if __name__ == "__main__":
    _main(sys.argv[1:])


def ddp_worker(rank: int, world_size: int, root: str, port: int, stop_at_step: int | None = None,
               tag: str = "") -> None:
    """torch.multiprocessing.spawn target: one gloo rank of a tiny DDP run; saves its final parameters and metrics
    (as rank<R><tag>.*). Ranks other than 0 get a checkpoint folder of their own (ROOT/rank<R>-checkpoints), as on
    node-local disks: only rank 0 sees the checkpoints."""
    import dataclasses
    import os

    import torch
    from safetensors.torch import save_file

    from mozart.training import distributed
    from mozart.training.trainer import Trainer, TrainPaths

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        model_cfg, train_cfg = tiny_configs(max_steps=4, eval_every=2, ckpt_every=2)
        paths = TrainPaths.under(Path(root))
        if rank > 0:
            paths = dataclasses.replace(paths, checkpoint_dir=Path(root) / f"rank{rank}-checkpoints")
        trainer = Trainer(model_cfg, train_cfg, 7, paths)
        metrics = trainer.fit(stop_at_step=stop_at_step)
        save_file({"params": param_vector(trainer.model)}, str(Path(root) / f"rank{rank}{tag}.safetensors"))
        (Path(root) / f"rank{rank}{tag}.json").write_text(json.dumps(
            metrics if metrics is not None else {"resumed_from": trainer.resumed_from, "steps": trainer.step}))
    finally:
        distributed.cleanup()
