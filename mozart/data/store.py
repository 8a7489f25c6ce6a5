"""The token store: each split of the prepared corpus as one flat uint16 token file, memory-mapped by its readers.

Written by the prepare stage into data/prepared/ (format in docs/CONTRACTS.md), nanoGPT style:

    <split>.tokens.u16    every piece's token ids (no BOS/EOS), concatenated, raw little-endian uint16
    <split>.offsets.npy   int64 (n_pieces + 1,): piece i is tokens[offsets[i]:offsets[i + 1]]
    <split>.composers.npy int32 (n_pieces,): the composer id of each piece
    store.json            format version, vocab size, transposition offsets, and per split n_pieces, n_tokens and
                          the sha256 of its token file (so a run fingerprints its data without reading the tokens)

Readers open the token file with `np.memmap`: nothing is loaded, a crop reads only the pages it touches, and every
process on a node shares those pages through the page cache, so a rank's memory does not grow with the corpus.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mozart.errors import DataError

STORE_FORMAT = 1
STORE_FILE = "store.json"
AUGMENT_FILE = "augment.json"  # in data/tokens (tokenize): {"transpose": [offsets]}; prepare copies it to store.json
TOKEN_DTYPE = np.dtype("<u2")
MAX_VOCAB = int(np.iinfo(TOKEN_DTYPE).max) + 1  # ids 0..65535
SPLITS = ("train", "val", "test")
PITCH_TOKEN_TYPES = ("Pitch", "NoteOn", "NoteOff")  # REMI/REMI+ and MIDILike name a note's pitch this way


def token_path(prepared_dir: Path, split: str) -> Path:
    return Path(prepared_dir) / f"{split}.tokens.u16"


def offsets_path(prepared_dir: Path, split: str) -> Path:
    return Path(prepared_dir) / f"{split}.offsets.npy"


def composers_path(prepared_dir: Path, split: str) -> Path:
    return Path(prepared_dir) / f"{split}.composers.npy"


@dataclass(frozen=True)
class VocabInfo:
    """What the store and the crop sampler need to know about a tokenizer's vocabulary."""
    size: int
    pad_id: int
    bos_id: int
    eos_id: int
    pitch_ids: dict[str, dict[int, int]]  # token type ("Pitch", ...) -> {MIDI pitch: token id}


def read_vocab_info(tokenizer_json: Path) -> VocabInfo:
    """Vocabulary size, special-token ids and pitch tokens of the miditok tokenizer saved by the tokenize stage."""
    import miditok

    tokenizer_json = Path(tokenizer_json)
    if not tokenizer_json.is_file():
        raise DataError(f"{tokenizer_json} is missing: run the tokenize stage first (`dvc repro tokenize`)")
    method = json.loads(tokenizer_json.read_text()).get("tokenization", "REMI")
    tokenizer = getattr(miditok, method)(params=tokenizer_json)
    pitch_ids: dict[str, dict[int, int]] = {}
    for name, token_id in tokenizer.vocab.items():
        kind, _, value = name.partition("_")
        if kind in PITCH_TOKEN_TYPES and value.isdigit():
            pitch_ids.setdefault(kind, {})[int(value)] = int(token_id)
    try:
        return VocabInfo(size=len(tokenizer), pad_id=tokenizer.pad_token_id, bos_id=tokenizer["BOS_None"],
                         eos_id=tokenizer["EOS_None"], pitch_ids=pitch_ids)
    except KeyError as exc:
        raise DataError(f"{tokenizer_json} has no {exc} token: tokenize with special tokens PAD, BOS and EOS") from None


def check_vocab_fits(vocab_size: int, source: Path | str) -> None:
    """The store keeps ids as uint16: a larger vocabulary cannot be stored (it would wrap around silently)."""
    if vocab_size > MAX_VOCAB:
        raise DataError(f"{source}: the vocabulary has {vocab_size:,} tokens, more than the {MAX_VOCAB:,} a uint16 "
                        "token store can hold; use a smaller tokenizer (fewer velocities/positions/tempos)")


class SplitWriter:
    """Streams the pieces of one split to its token file; `close()` writes offsets and composer ids."""

    def __init__(self, prepared_dir: Path, split: str):
        self.prepared_dir, self.split = Path(prepared_dir), split
        self.file = open(token_path(prepared_dir, split), "wb")
        self.sha = hashlib.sha256()
        self.lengths: list[int] = []
        self.composer_ids: list[int] = []

    def append(self, tokens: np.ndarray, composer_id: int) -> int:
        """Add one piece; returns its row in the split's store."""
        data = np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE).tobytes()
        self.file.write(data)
        self.sha.update(data)
        self.lengths.append(len(tokens))
        self.composer_ids.append(int(composer_id))
        return len(self.lengths) - 1

    def close(self) -> dict[str, Any]:
        """Finish the files; returns this split's entry of store.json."""
        self.file.close()
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(np.asarray(self.lengths, dtype=np.int64), out=offsets[1:])
        np.save(offsets_path(self.prepared_dir, self.split), offsets)
        np.save(composers_path(self.prepared_dir, self.split), np.asarray(self.composer_ids, dtype=np.int32))
        return {"n_pieces": len(self.lengths), "n_tokens": int(offsets[-1]), "sha256": self.sha.hexdigest()}


def write_store_json(prepared_dir: Path, splits: dict[str, dict], vocab: VocabInfo, transpose: list[int]) -> None:
    """store.json; it carries the vocabulary facts training needs, so training never has to import miditok."""
    meta = {"format": STORE_FORMAT, "dtype": "uint16", "vocab_size": int(vocab.size),
            "vocab": {"pad_id": vocab.pad_id, "bos_id": vocab.bos_id, "eos_id": vocab.eos_id,
                      "pitch_ids": {kind: {str(p): t for p, t in sorted(ids.items())}
                                    for kind, ids in sorted(vocab.pitch_ids.items())}},
            "transpose": sorted({int(t) for t in transpose} - {0}), "splits": splits}
    (Path(prepared_dir) / STORE_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def vocab_of_store(meta: dict[str, Any]) -> VocabInfo:
    """The VocabInfo recorded in a store.json (see write_store_json)."""
    v = meta["vocab"]
    pitch_ids = {kind: {int(p): int(t) for p, t in ids.items()} for kind, ids in v["pitch_ids"].items()}
    return VocabInfo(size=int(meta["vocab_size"]), pad_id=int(v["pad_id"]), bos_id=int(v["bos_id"]),
                     eos_id=int(v["eos_id"]), pitch_ids=pitch_ids)


def write_store(prepared_dir: Path, splits: list[str], pieces: list, composer_ids: list[int], vocab: VocabInfo,
                transpose: list[int] = ()) -> list[int]:
    """Write a whole small store at once (tests, fixtures): piece i goes to `splits[i]`; returns each piece's
    store_row. The prepare stage streams shards through SplitWriter instead."""
    writers = {split: SplitWriter(prepared_dir, split) for split in SPLITS}
    rows = [writers[split].append(np.asarray(tokens), composer_id)
            for split, tokens, composer_id in zip(splits, pieces, composer_ids)]
    write_store_json(prepared_dir, {split: w.close() for split, w in writers.items()}, vocab, list(transpose))
    return rows


def read_store_json(prepared_dir: Path) -> dict[str, Any]:
    path = Path(prepared_dir) / STORE_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing (data prepared by an older version?): rerun `dvc repro prepare`")
    meta = json.loads(path.read_text())
    if meta.get("format") != STORE_FORMAT:
        raise DataError(f"{path} has store format {meta.get('format')}, this version reads {STORE_FORMAT}: "
                        "rerun `dvc repro prepare`")
    return meta


class TokenStore:
    """One split of the store, memory-mapped: `piece(i)` is a read-only uint16 view, nothing is loaded up front."""

    def __init__(self, prepared_dir: Path, split: str):
        prepared_dir = Path(prepared_dir)
        paths = (token_path(prepared_dir, split), offsets_path(prepared_dir, split),
                 composers_path(prepared_dir, split))
        for path in paths:
            if not path.is_file():
                raise DataError(f"{path} is missing: rerun `dvc repro prepare`")
        self.split = split
        self.offsets = np.load(paths[1], mmap_mode="r")
        self.composer_ids = np.load(paths[2], mmap_mode="r")
        n_tokens = int(self.offsets[-1])
        if paths[0].stat().st_size != n_tokens * TOKEN_DTYPE.itemsize:
            raise DataError(f"{paths[0]} holds {paths[0].stat().st_size} bytes, its offsets say "
                            f"{n_tokens * TOKEN_DTYPE.itemsize}: the store is truncated; rerun `dvc repro prepare`")
        # np.memmap cannot map an empty file: an empty split gets an empty array instead. A plain ndarray view of
        # the mapping slices ~10x faster than the np.memmap subclass and keeps the mapping alive through .base.
        self.tokens = (np.memmap(paths[0], dtype=TOKEN_DTYPE, mode="r", shape=(n_tokens,)).view(np.ndarray)
                       if n_tokens else np.zeros(0, dtype=TOKEN_DTYPE))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def piece(self, i: int) -> np.ndarray:
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])]


class TokenStoreReader:
    """Token ids of metadata rows by (split, store_row), read from the memory-mapped store (evaluate, sample)."""

    def __init__(self, prepared_dir: Path):
        self.prepared_dir = Path(prepared_dir)
        self._stores: dict[str, TokenStore] = {}

    def store(self, split: str) -> TokenStore:
        if split not in self._stores:
            self._stores[split] = TokenStore(self.prepared_dir, split)
        return self._stores[split]

    def ids(self, split: str, row: int) -> list[int]:
        return self.store(split).piece(int(row)).tolist()
