"""Training data: random crops of token sequences from the memory-mapped token store (mozart.data.store).

Each piece becomes `[BOS] + tokens + [EOS]`; a crop is `seq_len + 1` consecutive tokens of it (inputs are the first
seq_len, targets the last seq_len), so a crop that starts at a piece's beginning starts with BOS and the model learns
how pieces open and end. Pieces shorter than a crop are padded with PAD, which the loss ignores.

Sampling: pieces are drawn with probability proportional to their length (so every token of the corpus is about
equally likely to be trained on; uniform piece sampling would over-train short pieces), by `searchsorted` on the
cumulative lengths (O(log n) per crop), then a uniform crop start. Crops are sliced from `np.memmap`, so a rank's
private memory is one cumulative-length array (8 B per piece), not the corpus. Transposition augmentation
(`tokenize.transpose`, recorded in store.json) happens here, on the crop: one offset is drawn uniformly from 0 and
the offsets that keep every pitch of the crop inside the tokenizer's pitch range, and its Pitch/NoteOn/NoteOff tokens
are shifted by it.
Batch order is a pure function of (seed, step, rank, micro-batch) — no iterator state — so resuming a killed run
replays exactly the same batches, and every DDP rank draws its own crops.

Validation uses fixed crops of the val split (deterministic in the seed), untransposed, with the true composer ids.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mozart.data.store import TokenStore, VocabInfo, composers_path, offsets_path, read_store_json, vocab_of_store
from mozart.errors import DataError

VAL_STREAM = 0x5EED_0F_7A1  # separates the validation crops' random stream from the training one


@dataclass(frozen=True)
class Vocab:
    size: int
    pad_id: int
    bos_id: int
    eos_id: int


def data_fingerprint(tokens_dir: Path, prepared_dir: Path) -> str:
    """sha256 over what training reads; a checkpoint is only resumed on the same data. The token files enter through
    the sha256 that store.json records for each, so this costs O(pieces), not O(tokens)."""
    h = hashlib.sha256()
    files = [tokens_dir / "tokenizer.json", prepared_dir / "store.json", prepared_dir / "composers.json"]
    files += [path(prepared_dir, split) for split in ("train", "val") for path in (offsets_path, composers_path)]
    for path in files:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


class Transposer:
    """Shifts the pitch tokens of crops by semitone offsets, never out of the tokenizer's pitch range."""

    def __init__(self, info: VocabInfo, offsets: list[int]):
        self.offsets = np.array([0, *sorted({int(o) for o in offsets} - {0})], dtype=np.int64)
        self.pitch_of = np.full(info.size, -1, dtype=np.int64)  # token id -> MIDI pitch, -1 for other tokens
        self.shift = np.tile(np.arange(info.size, dtype=np.int64), (len(self.offsets), 1))  # [k, id] -> shifted id
        pitches = [p for ids in info.pitch_ids.values() for p in ids]
        self.low, self.high = (min(pitches), max(pitches)) if pitches else (0, -1)
        for ids in info.pitch_ids.values():
            for pitch, token in ids.items():
                self.pitch_of[token] = pitch
                for k, offset in enumerate(self.offsets):
                    self.shift[k, token] = ids.get(pitch + int(offset), -1)

    @property
    def enabled(self) -> bool:
        return len(self.offsets) > 1 and self.high >= self.low

    def __call__(self, rng: np.random.Generator, crops: np.ndarray) -> np.ndarray:
        """Each (batch, length) crop shifted by an offset drawn uniformly among those valid for it (0 always is)."""
        pitch = self.pitch_of[crops]
        has = pitch >= 0
        low = np.where(has, pitch, self.high).min(axis=1, initial=self.high)
        high = np.where(has, pitch, self.low).max(axis=1, initial=self.low)
        valid = (low[:, None] + self.offsets >= self.low) & (high[:, None] + self.offsets <= self.high)
        valid[:, 0] = True
        nth = (rng.random(len(crops)) * valid.sum(axis=1)).astype(np.int64)  # the nth valid offset of each row
        chosen = np.argmax(np.cumsum(valid, axis=1) > nth[:, None], axis=1)
        return self.shift[chosen[:, None], crops]


class CropSampler:
    """Crops of one split of the token store, each piece read as `[BOS] + tokens + [EOS]`."""

    def __init__(self, store: TokenStore, vocab: Vocab, transposer: Transposer | None = None):
        self.store = store
        self.vocab = vocab
        self.transposer = transposer if transposer is not None and transposer.enabled else None
        self.offsets = store.offsets  # memory-mapped, shared; the only private array is `cumulative` (8 B a piece)
        # lengths with BOS and EOS, summed: piece j owns the draws in [cumulative[j-1], cumulative[j])
        self.cumulative = np.asarray(store.offsets[1:], dtype=np.int64) + 2 * np.arange(1, len(store) + 1)
        self.n_tokens = int(self.cumulative[-1]) if len(self.cumulative) else 0

    def __len__(self) -> int:
        return len(self.cumulative)

    def pick(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """Piece indices drawn with probability proportional to their length: O(batch_size * log n)."""
        draws = rng.integers(0, self.n_tokens, size=batch_size)
        return np.searchsorted(self.cumulative, draws, side="right")

    def crops(self, rng: np.random.Generator, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch_size, seq_len + 1) token crops and the (batch_size,) composer ids of their pieces."""
        which = self.pick(rng, batch_size)
        firsts, ends = np.asarray(self.offsets[which]), np.asarray(self.offsets[which + 1])
        starts = rng.integers(0, np.maximum(1, ends - firsts + 2 - seq_len))  # len - (seq_len+1) + 1 starts
        width, vocab, tokens = seq_len + 1, self.vocab, self.store.tokens
        out = np.full((batch_size, width), vocab.pad_id, dtype=np.int64)
        for row, (first, n, start) in enumerate(zip(firsts.tolist(), (ends - firsts).tolist(), starts.tolist())):
            # crop = ([BOS] + tokens + [EOS])[start:start + width]; token k sits at position k + 1
            dst = 0
            if start == 0:
                out[row, 0] = vocab.bos_id
                dst = 1
            a, b = max(0, start - 1), min(n, start + width - 1)
            out[row, dst:dst + b - a] = tokens[first + a:first + b]
            if dst + b - a < width:  # the crop reaches past the last token: EOS, then padding
                out[row, dst + b - a] = vocab.eos_id
        if self.transposer is not None:
            out = self.transposer(rng, out)
        return torch.from_numpy(out), torch.from_numpy(np.asarray(self.store.composer_ids[which], dtype=np.int64))


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
        """Open the train and val splits of the store; reads offsets and composer ids, never metadata.parquet."""
        tokens_dir, prepared_dir = Path(tokens_dir), Path(prepared_dir)
        if not (prepared_dir / "composers.json").is_file():
            raise DataError(f"{prepared_dir / 'composers.json'} is missing: run the prepare stage first "
                            "(`dvc repro prepare`)")
        if not (tokens_dir / "tokenizer.json").is_file():
            raise DataError(f"{tokens_dir / 'tokenizer.json'} is missing: run the tokenize stage first "
                            "(`dvc repro tokenize`)")
        store_meta = read_store_json(prepared_dir)
        info = vocab_of_store(store_meta)  # recorded by prepare: no miditok import on the training path
        vocab = Vocab(size=info.size, pad_id=info.pad_id, bos_id=info.bos_id, eos_id=info.eos_id)
        composers = json.loads((prepared_dir / "composers.json").read_text())
        train, val = TokenStore(prepared_dir, "train"), TokenStore(prepared_dir, "val")
        if len(train) == 0:
            raise DataError(f"{prepared_dir} has no train pieces: the corpus is empty")
        if len(val) == 0:
            raise DataError(f"{prepared_dir} has no val pieces: add pieces to the corpus or raise "
                            "prepare.val_fraction")
        transposer = Transposer(info, store_meta.get("transpose", []))
        return cls(CropSampler(train, vocab, transposer), CropSampler(val, vocab), vocab, composers,
                   data_fingerprint(tokens_dir, prepared_dir))

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
