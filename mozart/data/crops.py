"""Training data: random crops of token sequences from the tokenize shards, split by the prepare stage.

Each piece becomes `[BOS] + tokens + [EOS]`; a crop is `seq_len + 1` consecutive tokens of it (inputs are the first
seq_len, targets the last seq_len), so a crop that starts at a piece's beginning starts with BOS and the model learns
how pieces open and end. Pieces shorter than a crop are padded with PAD, which the loss ignores.

Sampling: pieces are drawn with probability proportional to their length (so every token of the corpus is about
equally likely to be trained on; uniform piece sampling would over-train short pieces), then a uniform crop start.
Batch order is a pure function of (seed, step, rank, micro-batch) — no iterator state — so resuming a killed run
replays exactly the same batches, and every DDP rank draws its own crops.

Validation uses fixed crops of the untransposed val rows (deterministic in the seed), with the true composer ids.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mozart.errors import DataError

VAL_STREAM = 0x5EED_0F_7A1  # separates the validation crops' random stream from the training one


@dataclass(frozen=True)
class Vocab:
    size: int
    pad_id: int
    bos_id: int
    eos_id: int


def read_vocab(tokenizer_json: Path) -> Vocab:
    """Vocabulary size and special-token ids of the miditok tokenizer saved by the tokenize stage."""
    import miditok

    if not tokenizer_json.is_file():
        raise DataError(f"{tokenizer_json} is missing: run the tokenize stage first (`dvc repro tokenize`)")
    config = json.loads(tokenizer_json.read_text())
    method = config.get("tokenization", "REMI")
    tokenizer = getattr(miditok, method)(params=tokenizer_json)
    try:
        return Vocab(size=len(tokenizer), pad_id=tokenizer.pad_token_id, bos_id=tokenizer["BOS_None"],
                     eos_id=tokenizer["EOS_None"])
    except KeyError as exc:
        raise DataError(f"{tokenizer_json} has no {exc} token: tokenize with special tokens PAD, BOS and EOS") from None


def data_fingerprint(tokens_dir: Path, prepared_dir: Path) -> str:
    """sha256 over the files training reads; a checkpoint is only resumed on the same data."""
    h = hashlib.sha256()
    files = [tokens_dir / "tokenizer.json", *sorted(tokens_dir.glob("shard-*.parquet")),
             prepared_dir / "metadata.parquet", prepared_dir / "composers.json"]
    for path in files:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


class CropSampler:
    """Pieces of one split held in memory as `[BOS] + tokens + [EOS]` int64 arrays, with their composer ids."""

    def __init__(self, pieces: list[np.ndarray], composer_ids: np.ndarray, vocab: Vocab):
        self.pieces = pieces
        self.composer_ids = composer_ids
        self.vocab = vocab
        lengths = np.array([len(p) for p in pieces], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.n_tokens = int(lengths.sum())

    def __len__(self) -> int:
        return len(self.pieces)

    def crops(self, rng: np.random.Generator, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch_size, seq_len + 1) token crops and the (batch_size,) composer ids of their pieces."""
        which = rng.choice(len(self.pieces), size=batch_size, p=self.weights)
        out = np.full((batch_size, seq_len + 1), self.vocab.pad_id, dtype=np.int64)
        for i, j in enumerate(which):
            piece = self.pieces[j]
            start = int(rng.integers(0, max(1, len(piece) - seq_len)))  # len - (seq_len+1) + 1 possible starts
            crop = piece[start:start + seq_len + 1]
            out[i, :len(crop)] = crop
        return torch.from_numpy(out), torch.from_numpy(self.composer_ids[which].astype(np.int64))


class TrainData:
    """The train and val splits of a prepared corpus, and deterministic batches drawn from them."""

    def __init__(self, train: CropSampler, val: CropSampler, vocab: Vocab, composers: dict, fingerprint: str):
        self.train = train
        self.val = val
        self.vocab = vocab
        self.composers = composers
        self.fingerprint = fingerprint

    @property
    def n_composers(self) -> int:
        return len(self.composers["names"])

    @classmethod
    def load(cls, tokens_dir: Path, prepared_dir: Path) -> "TrainData":
        tokens_dir, prepared_dir = Path(tokens_dir), Path(prepared_dir)
        for path in (prepared_dir / "metadata.parquet", prepared_dir / "composers.json"):
            if not path.is_file():
                raise DataError(f"{path} is missing: run the prepare stage first (`dvc repro prepare`)")
        vocab = read_vocab(tokens_dir / "tokenizer.json")
        composers = json.loads((prepared_dir / "composers.json").read_text())
        meta = pd.read_parquet(prepared_dir / "metadata.parquet")
        train_meta = meta[meta["split"] == "train"]
        val_meta = meta[(meta["split"] == "val") & (meta["transpose"] == 0)]
        if train_meta.empty:
            raise DataError(f"{prepared_dir / 'metadata.parquet'} has no train rows: the corpus is empty")
        if val_meta.empty:
            raise DataError(f"{prepared_dir / 'metadata.parquet'} has no val rows: add pieces to the corpus or raise "
                            "prepare.val_fraction")
        train = cls._sampler(tokens_dir, train_meta, vocab)
        val = cls._sampler(tokens_dir, val_meta, vocab)
        return cls(train, val, vocab, composers, data_fingerprint(tokens_dir, prepared_dir))

    @staticmethod
    def _sampler(tokens_dir: Path, meta: pd.DataFrame, vocab: Vocab) -> CropSampler:
        meta = meta.sort_values(["shard", "row"])  # a fixed order, whatever the metadata row order
        pieces: list[np.ndarray] = []
        for shard, rows in meta.groupby("shard", sort=True):
            path = tokens_dir / shard
            if not path.is_file():
                raise DataError(f"{path} is listed in metadata.parquet but missing: rerun tokenize and prepare")
            column = pd.read_parquet(path, columns=["tokens"])["tokens"]
            for r in rows["row"]:
                tokens = np.asarray(column.iloc[int(r)], dtype=np.int64)
                pieces.append(np.concatenate([[vocab.bos_id], tokens, [vocab.eos_id]]))
        return CropSampler(pieces, meta["composer_id"].to_numpy(), vocab)

    def train_batch(self, seed: int, step: int, rank: int, micro: int, batch_size: int, seq_len: int,
                    p_uncond: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, targets, composer_ids) for one micro-batch; composer ids dropped to 0 with prob. p_uncond."""
        rng = _rng(seed, step, rank, micro)
        crops, composer_ids = self.train.crops(rng, batch_size, seq_len)
        drop = torch.from_numpy(rng.random(batch_size) < p_uncond)
        composer_ids = composer_ids.masked_fill(drop, 0)  # classifier-free guidance: learn the unconditional path
        return crops[:, :-1], crops[:, 1:], composer_ids

    def val_batches(self, seed: int, n_batches: int, batch_size: int,
                    seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The same fixed validation crops at every evaluation (and on every rank)."""
        rng = _rng(seed, VAL_STREAM)
        batches = []
        for _ in range(n_batches):
            crops, composer_ids = self.val.crops(rng, batch_size, seq_len)
            batches.append((crops[:, :-1], crops[:, 1:], composer_ids))
        return batches
