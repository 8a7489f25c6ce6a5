"""prepare stage: composer ids, train/val/test splits, the token store and data metrics (docs/CONTRACTS.md).

Reads the organize manifest, the tokenize manifest and the small columns of the token shards to decide the splits,
then streams the shards once, one at a time, into the memory-mapped token store (mozart.data.store): memory stays
at one shard whatever the corpus size. Splits are made per *work* (`work_id`): the performances and duplicates
of one work always land in the same split, so val/test never hear a piece the model trained on. The split of a work
depends only on (seed, work_id) through a hash, so it is deterministic and adding a work does not move the others.
Pieces whose composer is unknown (organize's `Unknown`: placeholder labels such as Anonymous or Christmas) train the
unconditional id 0 only; they never get a composer id of their own, and metrics/data.json counts them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mozart.config import PrepareConfig
from mozart.data.store import AUGMENT_FILE, SPLITS, SplitWriter, check_vocab_fits, read_vocab_info, write_store_json
from mozart.errors import DataError

UNCONDITIONAL = "<unconditional>"
OTHER = "OTHER"
UNKNOWN_COMPOSER = "Unknown"  # organize's composer for placeholder labels (docs/CONTRACTS.md)
SHARD_COLUMNS = ["piece_id", "composer", "transpose", "n_tokens"]


@dataclass(frozen=True)
class PrepareSummary:
    data: dict  # the contents of metrics/data.json

    def line(self) -> str:
        d = self.data
        unknown = f" ({d['unknown_composer']} without a composer: id 0 only)" if d.get("unknown_composer") else ""
        return (f"prepare: {d['accepted']} pieces of {d['composers']} composers{unknown} -> {d['n_composer_ids']} "
                "composer ids; "
                f"works train/val/test {d['works_train']}/{d['works_val']}/{d['works_test']}; "
                f"tokens {d['tokens_train']:,}/{d['tokens_val']:,}/{d['tokens_test']:,}")


def composer_ids(n_pieces: dict[str, int], min_pieces: int) -> dict:
    """composers.json: 0 = unconditional, 1..N = composers with >= min_pieces pieces (alphabetical), N+1 = OTHER."""
    major = sorted(c for c, n in n_pieces.items() if n >= min_pieces)
    minor = sorted(c for c, n in n_pieces.items() if n < min_pieces)
    names = [UNCONDITIONAL, *major]
    counts = [0, *(n_pieces[c] for c in major)]
    to_id = {c: i for i, c in enumerate(major, start=1)}
    other_id = None
    if minor:
        other_id = len(names)
        names.append(OTHER)
        counts.append(sum(n_pieces[c] for c in minor))
        to_id.update({c: other_id for c in minor})
    return {"unconditional_id": 0, "other_id": other_id, "names": names, "n_pieces": counts,
            "composer_to_id": dict(sorted(to_id.items()))}


def split_works(work_ids: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """work_id -> "train" | "val" | "test". Works are ordered by sha256(seed, work_id); the first go to test, the next
    to val. With >= 3 works, val and test each get at least one (if their fraction is > 0) and train keeps one."""
    works = sorted(set(work_ids), key=lambda w: hashlib.sha256(f"{seed}\0{w}".encode()).hexdigest())
    n = len(works)
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if n >= 3:  # tiny corpora: a split that exists in params.yaml must not come out empty
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
    elif n == 2:
        n_test, n_val = 0, 1 if val_fraction > 0 else 0
    else:
        n_test = n_val = 0
    while n_test + n_val > n - 1:  # train keeps at least one work
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    splits = {}
    for i, work in enumerate(works):
        splits[work] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return splits


def _read_inputs(organized_dir: Path, tokens_dir: Path):
    import pandas as pd
    import pyarrow.parquet as pq

    organized = organized_dir / "manifest.parquet"
    tokens = tokens_dir / "manifest.parquet"
    for path, stage in ((organized, "organize"), (tokens, "tokenize")):
        if not path.is_file():
            raise DataError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    org = pd.read_parquet(organized, columns=["source_path", "piece_id", "work_id", "composer", "status", "reason"])
    tok = pd.read_parquet(tokens, columns=["piece_id", "status", "reason"])
    shards = sorted(tokens_dir.glob("shard-*.parquet"))
    parts = []
    for shard in shards:
        table = pq.read_table(shard, columns=SHARD_COLUMNS).to_pandas()
        table["shard"] = shard.name
        table["row"] = range(len(table))
        parts.append(table[table["transpose"] == 0])  # transposed copies (older tokenize output) are not stored
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*SHARD_COLUMNS, "shard", "row"])
    return org, tok, rows


def prepare(organized_dir: Path, tokens_dir: Path, prepared_dir: Path, metrics_path: Path, cfg: PrepareConfig,
            seed: int) -> PrepareSummary:
    """Write data/prepared/{composers.json, metadata.parquet} and metrics/data.json; returns the summary."""
    from mozart.infra.atomic import atomic_dir, write_json

    org, tok, rows = _read_inputs(Path(organized_dir), Path(tokens_dir))
    org_accepted = org[org["status"] == "accepted"]
    if set(tok["piece_id"]) != set(org_accepted["piece_id"]):
        raise DataError(f"{Path(tokens_dir) / 'manifest.parquet'} does not match the organize manifest (a stale "
                        "tokenize output?): rerun `dvc repro tokenize`")
    tok_ok = set(tok.loc[tok["status"] == "accepted", "piece_id"])
    rows = rows[rows["piece_id"].isin(tok_ok)]
    if rows.empty:
        raise DataError("no accepted pieces to train on: every file was rejected by organize or tokenize "
                        f"(reasons in {Path(organized_dir) / 'manifest.parquet'} and "
                        f"{Path(tokens_dir) / 'manifest.parquet'}); check organize.source")

    pieces = org_accepted.set_index("piece_id").loc[sorted(tok_ok)]
    known = pieces[pieces["composer"] != UNKNOWN_COMPOSER]
    if known.empty:
        raise DataError(f"every accepted piece has an unknown composer (placeholder labels such as Unknown or "
                        f"Anonymous; see {Path(organized_dir) / 'composers.json'}): give the files composer labels "
                        "or map the labels with organize.aliases")
    n_pieces = known.groupby("composer").size().to_dict()
    if max(n_pieces.values()) < cfg.min_pieces:
        # Composer conditioning is the point of the model: with no composer above the bar every piece would share
        # OTHER and `--composer` could never work, so stop here rather than train an unconditional model silently.
        biggest = max(n_pieces.items(), key=lambda kv: (kv[1], kv[0]))
        raise DataError(f"no composer has prepare.min_pieces = {cfg.min_pieces} pieces (the largest, "
                        f"{biggest[0]}, has {biggest[1]}): lower prepare.min_pieces in params.yaml or add pieces")
    composers = composer_ids({str(c): int(n) for c, n in n_pieces.items()}, cfg.min_pieces)
    splits = split_works(pieces["work_id"].tolist(), cfg.val_fraction, cfg.test_fraction, seed)

    meta = rows.drop(columns=["composer"]).merge(pieces[["work_id", "composer"]], left_on="piece_id",
                                                 right_index=True, how="left")
    to_id = {**composers["composer_to_id"], UNKNOWN_COMPOSER: composers["unconditional_id"]}
    meta["composer_id"] = meta["composer"].map(to_id).astype("int64")
    meta["split"] = meta["work_id"].map(splits)
    meta = meta[["piece_id", "work_id", "composer", "composer_id", "split", "transpose", "n_tokens", "shard", "row"]]
    meta = meta.astype({"transpose": "int8", "n_tokens": "int32", "row": "int64"}).reset_index(drop=True)
    meta["store_row"] = meta.groupby("split").cumcount().astype("int64")  # row order = store order

    data = _data_metrics(org, tok, meta, pieces, splits, composers)
    info = read_vocab_info(Path(tokens_dir) / "tokenizer.json")
    check_vocab_fits(info.size, Path(tokens_dir) / "tokenizer.json")
    with atomic_dir(prepared_dir) as tmp:
        write_json(tmp / "composers.json", composers)
        meta.to_parquet(tmp / "metadata.parquet", index=False)
        split_entries = write_token_store(Path(tokens_dir), tmp, meta)
        write_store_json(tmp, split_entries, info, _augment_offsets(Path(tokens_dir)))
    write_json(metrics_path, data)
    return PrepareSummary(data)


def _augment_offsets(tokens_dir: Path) -> list[int]:
    path = tokens_dir / AUGMENT_FILE
    if not path.is_file():  # data/tokens from before on-the-fly augmentation: no transposition
        return []
    return [int(t) for t in json.loads(path.read_text()).get("transpose", [])]


def write_token_store(tokens_dir: Path, prepared_dir: Path, meta) -> dict[str, dict]:
    """Stream every metadata row's tokens, shard by shard, into its split's token file (in metadata order)."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    writers = {split: SplitWriter(prepared_dir, split) for split in SPLITS}
    for shard, rows in tqdm(list(meta.groupby("shard", sort=True)), desc="token store", unit="shard", disable=None,
                            leave=False):
        column = pq.read_table(tokens_dir / shard, columns=["tokens"]).column("tokens").combine_chunks()
        values = column.flatten().to_numpy(zero_copy_only=False)
        offsets = column.offsets.to_numpy() - column.offsets[0].as_py()  # flatten() drops any slice offset
        for row, split, composer_id, store_row in zip(rows["row"], rows["split"], rows["composer_id"],
                                                      rows["store_row"]):
            written = writers[split].append(values[offsets[row]:offsets[row + 1]], composer_id)
            assert written == store_row, "metadata rows must be grouped by shard in store order"
    return {split: writer.close() for split, writer in writers.items()}


def _data_metrics(org, tok, meta, pieces, splits: dict[str, str], composers: dict) -> dict:
    """metrics/data.json: files_in = accepted + duplicates + rejected (organize and tokenize rejections)."""
    source_of = dict(zip(org["piece_id"], org["source_path"]))
    rejected_list = [{"source_path": s, "stage": "organize", "reason": r}
                     for s, r in zip(org.loc[org["status"] == "rejected", "source_path"],
                                     org.loc[org["status"] == "rejected", "reason"])]
    tok_rejected = tok[tok["status"] != "accepted"]
    rejected_list += [{"source_path": source_of.get(p, p), "stage": "tokenize", "reason": r}
                      for p, r in zip(tok_rejected["piece_id"], tok_rejected["reason"])]
    original = meta  # one row per piece: transpositions are no longer stored
    data = {
        "files_in": int(len(org)),
        "accepted": int(len(pieces)),
        "duplicates": int((org["status"] == "duplicate").sum()),
        "rejected": len(rejected_list),
        "composers": int(pieces.loc[pieces["composer"] != UNKNOWN_COMPOSER, "composer"].nunique()),
        "unknown_composer": int((pieces["composer"] == UNKNOWN_COMPOSER).sum()),
        "n_composer_ids": len(composers["names"]),
        "tokens_train": int(meta.loc[meta["split"] == "train", "n_tokens"].sum()),
        "tokens_val": int(original.loc[original["split"] == "val", "n_tokens"].sum()),
        "tokens_test": int(original.loc[original["split"] == "test", "n_tokens"].sum()),
        "rejected_list": sorted(rejected_list, key=lambda r: (r["source_path"], r["stage"])),
    }
    for split in ("train", "val", "test"):
        data[f"works_{split}"] = sum(1 for s in splits.values() if s == split)
        data[f"pieces_{split}"] = int(original.loc[original["split"] == split, "piece_id"].nunique())
    assert data["accepted"] + data["duplicates"] + data["rejected"] == data["files_in"], "data.json does not add up"
    return data


def run(cfg: PrepareConfig, seed: int, paths) -> dict:
    """The prepare stage (stage contract: mozart/paths.py PreparePaths); returns metrics/data.json's content."""
    return prepare(paths.organized_dir, paths.tokens_dir, paths.prepared_dir, paths.data_json, cfg, seed).data
