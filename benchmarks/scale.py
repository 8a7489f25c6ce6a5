"""Scale benchmark (issue 11): training start-up, memory per rank and crop cost on synthetic token stores.

    python benchmarks/scale.py                          # 10 M, 100 M and 1 B tokens -> benchmarks/out/scale.md
    python benchmarks/scale.py --sizes 10M 100M --old /tmp/mozart-old   # also the code before the token store

For each size a synthetic corpus is written under --workdir (default /tmp/mozart-scale, deleted afterwards): REMI-valid
token ids (bars of 16 notes: Bar, then Position / Pitch / Velocity / Duration with sorted positions), pieces of
4-27 bars (~1,000 tokens, so 1 B tokens is ~1 M pieces), 90/5/5 % train/val/test, 8 composers, written straight to
the token store (mozart.data.store) — no MIDI. With --old (a checkout of commit 6550630, e.g.
`git archive 6550630 | tar -x -C /tmp/mozart-old`) the same pieces are also written as the old tokenize shards, for
sizes up to --old-max (the old loader keeps 8 B per token per rank, ~26 B while loading: 1 B tokens cannot load on a
24 GiB machine).

Measured per size, each in a fresh process (a tiny model: this measures the data path, not the model):
- start-up: seconds from spawning the process to the end of its first optimizer step (imports of torch & co
  included), and the part of it after those imports (data, model and optimizer set-up, the first step);
- peak RSS (VmHWM) of one rank and of each of 2 gloo ranks at that point, with its private (RssAnon) part; memory-
  mapped token pages are file-backed and shared by every process on the node through the page cache;
- crop cost: mean time of `TrainData.train_batch` per micro-batch at batch 8 x seq 256 and at the params.yaml
  recipe's batch 2 x seq 8192, and of the piece choice alone;
- evaluate: peak RSS and time of the evaluate stage's test-window reading (metadata.parquet, then
  `context_windows` per composer, context 8192, 20 windows, as run_stage does).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# benchmarks/tokenize.py would shadow the standard library's tokenize: drop this folder from sys.path first
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or os.curdir).resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

OUT = REPO / "benchmarks/out/scale.md"
SIZES = {"1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000, "1B": 1_000_000_000}  # 1M: a quick smoke run
NOTES_PER_BAR = 16
BAR_TOKENS = 1 + 4 * NOTES_PER_BAR
N_COMPOSERS = 8
ROWS_PER_SHARD = 1000

TRAIN_CHILD = r'''
import json, os, sys, time
from pathlib import Path
t0 = float(os.environ["SCALE_T0"])
from mozart.config import ModelConfig, TrainConfig
from mozart.training.trainer import Trainer, TrainPaths
t_imported = time.time()

def status():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}

model = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ff=64, context=256, dropout=0.0)
cfg = TrainConfig(seq_len=256, batch_size=8, grad_accum=1, max_steps=1000, eval_every=1000, eval_batches=2,
                  ckpt_every=1000, grad_checkpointing=False, device="cpu", amp=False, num_workers=0, threads=1)
trainer = Trainer(model, cfg, 0, TrainPaths.under(Path(sys.argv[1])))

def on_step(step):
    out = {"startup_s": time.time() - t0, "setup_s": time.time() - t_imported, **status(), "rank": trainer.dist.rank}
    data, rank = trainer.data, trainer.dist.rank
    for name, (batch, seq) in {"crop_ms": (8, 256), "crop_recipe_ms": (2, 8192)}.items():
        data.train_batch(0, 10_000, rank, 0, batch, seq, 0.1)
        started = time.perf_counter()
        for i in range(200):
            data.train_batch(0, 10_001 + i, rank, 0, batch, seq, 0.1)
        out[name] = (time.perf_counter() - started) / 200 * 1e3
    import numpy as np
    sampler = data.train
    if hasattr(sampler, "pick"):
        pick = lambda rng: sampler.pick(rng, 8)
    else:  # the code before the token store: rng.choice with a probability vector
        pick = lambda rng: rng.choice(len(sampler.pieces), size=8, p=sampler.weights)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(200):
        pick(rng)
    out["pick_ms"] = (time.perf_counter() - started) / 200 * 1e3
    out["n_pieces"] = len(sampler)
    print("SCALE_RESULT " + json.dumps(out), flush=True)
    os._exit(0)

trainer.fit(on_step=on_step)
'''

EVAL_CHILD = r'''
import json, sys, time
from pathlib import Path
from types import SimpleNamespace
import pandas as pd
t0 = time.time()
root = Path(sys.argv[1])
import mozart.evaluation.stage as stage

def status():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "RssAnon", "RssFile")}

base = status()["VmHWM"]
meta = pd.read_parquet(root / "data/prepared/metadata.parquet")
originals = meta[meta["transpose"] == 0]
test_all = originals[originals["split"] == "test"]
if hasattr(stage, "ShardReader"):
    reader = stage.ShardReader(root / "data/tokens")
else:
    from mozart.data.store import TokenStoreReader
    reader = TokenStoreReader(root / "data/prepared")
config = SimpleNamespace(context=8192, bos_id=1)
n = 0
for composer_id, rows in test_all.groupby("composer_id"):
    n += sum(len(c) for c, _ in stage.context_windows(rows, reader, config, 20, 0))
print("SCALE_RESULT " + json.dumps({"eval_s": time.time() - t0, "eval_tokens": n, "import_hwm": base,
                                    **status()}), flush=True)
'''


def vocab_ids(tokenizer) -> dict[str, np.ndarray]:
    groups: dict[str, list[int]] = {}
    for name, token_id in tokenizer.vocab.items():
        groups.setdefault(name.split("_")[0], []).append(token_id)
    return {k: np.array(sorted(v), dtype=np.uint16) for k, v in groups.items()}


def random_bars(rng: np.random.Generator, n_bars: int, ids: dict[str, np.ndarray]) -> np.ndarray:
    """(n_bars, BAR_TOKENS) REMI-valid token ids: Bar, then 16 notes at non-decreasing positions."""
    bars = np.empty((n_bars, BAR_TOKENS), dtype=np.uint16)
    bars[:, 0] = ids["Bar"][0]
    shape = (n_bars, NOTES_PER_BAR)
    bars[:, 1::4] = ids["Position"][np.sort(rng.integers(0, len(ids["Position"]), size=shape), axis=1)]
    for column, kind in ((2, "Pitch"), (3, "Velocity"), (4, "Duration")):
        bars[:, column::4] = ids[kind][rng.integers(0, len(ids[kind]), size=shape)]
    return bars


def write_old_shard(tokens_dir: Path, meta: dict[str, list], pieces: list[np.ndarray]) -> None:
    """The last len(pieces) pieces of `meta` as a tokenize shard of the code before the store; empties `pieces`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mozart.data.tokenize import SHARD_SCHEMA

    lengths = np.array([len(p) for p in pieces], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(pieces), pa.uint16()))
    first = len(meta["piece_id"]) - len(pieces)
    table = pa.Table.from_arrays([pa.array(meta["piece_id"][first:]), pa.array(meta["composer"][first:]),
                                  pa.array(np.zeros(len(lengths), np.int8)), tokens, pa.array(lengths)],
                                 schema=SHARD_SCHEMA)
    pq.write_table(table, tokens_dir / f"shard-{first // ROWS_PER_SHARD:05d}.parquet")
    pieces.clear()


def write_corpus(root: Path, n_tokens: int, with_shards: bool, seed: int = 0) -> dict:
    """Synthetic data/tokens (tokenizer, and old-style shards if asked) and data/prepared (store + metadata)."""
    import pandas as pd

    from mozart.config import TokenizeConfig
    from mozart.data.store import SPLITS, SplitWriter, read_vocab_info, write_store_json
    from mozart.data.tokenize import build_tokenizer

    rng = np.random.default_rng(seed)
    tokens_dir, prepared = root / "data/tokens", root / "data/prepared"
    tokens_dir.mkdir(parents=True)
    prepared.mkdir(parents=True)
    tokenizer = build_tokenizer(TokenizeConfig())
    tokenizer.save(tokens_dir / "tokenizer.json")
    ids = vocab_ids(tokenizer)
    n_bars_total = n_tokens // BAR_TOKENS
    bars_per_piece = rng.integers(4, 28, size=n_bars_total // 4 + 1)
    bars_per_piece = bars_per_piece[:int(np.searchsorted(np.cumsum(bars_per_piece), n_bars_total)) + 1]
    names = ["<unconditional>"] + [f"Composer {c}" for c in range(1, N_COMPOSERS + 1)]
    writers = {split: SplitWriter(prepared, split) for split in SPLITS}
    meta = {k: [] for k in ("piece_id", "work_id", "composer", "composer_id", "split", "transpose", "n_tokens",
                            "shard", "row", "store_row")}
    shard_pieces: list[np.ndarray] = []
    buffer, used = random_bars(rng, 0, ids), 0

    for i, k in enumerate(bars_per_piece):
        if used + k > len(buffer):
            buffer, used = np.concatenate([buffer[used:], random_bars(rng, 200_000, ids)]), 0
        piece = buffer[used:used + k].reshape(-1)
        used += k
        split = "test" if i % 20 == 0 else "val" if i % 20 == 1 else "train"
        composer_id = 1 + i % N_COMPOSERS
        store_row = writers[split].append(piece, composer_id)
        piece_id = f"{names[composer_id]}/piece{i:07d}"
        for key, value in (("piece_id", piece_id), ("work_id", piece_id), ("composer", names[composer_id]),
                           ("composer_id", composer_id), ("split", split), ("transpose", 0),
                           ("n_tokens", len(piece)), ("shard", f"shard-{i // ROWS_PER_SHARD:05d}.parquet"),
                           ("row", i % ROWS_PER_SHARD), ("store_row", store_row)):
            meta[key].append(value)
        if with_shards:
            shard_pieces.append(piece)
            if len(shard_pieces) == ROWS_PER_SHARD:
                write_old_shard(tokens_dir, meta, shard_pieces)
    if with_shards and shard_pieces:
        write_old_shard(tokens_dir, meta, shard_pieces)
    splits = {split: writer.close() for split, writer in writers.items()}
    write_store_json(prepared, splits, read_vocab_info(tokens_dir / "tokenizer.json"), [-2, -1, 1, 2])
    frame = pd.DataFrame(meta).astype({"transpose": "int8", "n_tokens": "int32"})
    frame.to_parquet(prepared / "metadata.parquet", index=False)
    composers = {"unconditional_id": 0, "other_id": None, "names": names,
                 "n_pieces": [0] + [int((frame["composer_id"] == c).sum()) for c in range(1, N_COMPOSERS + 1)],
                 "composer_to_id": {n: c for c, n in enumerate(names) if c}}
    (prepared / "composers.json").write_text(json.dumps(composers))
    return {"n_pieces": len(bars_per_piece), "n_tokens": sum(s["n_tokens"] for s in splits.values())}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_children(code_dir: Path, script: str, root: Path, world_size: int, timeout_s: int) -> list[dict]:
    """Run `script` in `world_size` processes (gloo ranks if > 1) with `code_dir` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(code_dir), "OMP_NUM_THREADS": "1", "SCALE_T0": str(time.time())}
    procs = []
    port = free_port()
    for rank in range(world_size):
        extra = {"WORLD_SIZE": str(world_size), "RANK": str(rank), "LOCAL_RANK": str(rank),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)} if world_size > 1 else {}
        procs.append(subprocess.Popen([sys.executable, "-c", script, str(root)], env={**env, **extra}, cwd=root,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("SCALE_RESULT ")]
        if not lines:
            results.append({"error": (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]})
        else:
            results.append(json.loads(lines[-1].removeprefix("SCALE_RESULT ")))
    return results


def measure(code_dir: Path, root: Path, timeout_s: int) -> dict:
    single = run_children(code_dir, TRAIN_CHILD, root, 1, timeout_s)[0]
    ranks = run_children(code_dir, TRAIN_CHILD, root, 2, timeout_s)
    evaluation = run_children(code_dir, EVAL_CHILD, root, 1, timeout_s)[0]
    return {"single": single, "ranks": ranks, "eval": evaluation}


def fmt(value, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = ["| code | tokens | pieces | start-up (s) | after imports (s) | 2 ranks: start-up (s) "
             "| peak RSS 1 rank (MB) | private | peak RSS 2 gloo ranks (MB) | crop 8x256 (ms) | crop 2x8192 (ms) | piece choice (ms) "
             "| evaluate peak RSS (MB) | evaluate (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, e = r["single"], r["eval"]
        if "error" in s:
            lines.append(f"| {r['code']} | {r['tokens']} | {fmt(r['n_pieces'])} | cannot run: {s['error']} "
                         "| | | | | | | | | | |")
            continue
        ranks = " / ".join(fmt(x.get("VmHWM")) if "error" not in x else "error" for x in r["ranks"])
        rank_startup = max((x.get("startup_s", float("nan")) for x in r["ranks"]), default=float("nan"))
        lines.append(f"| {r['code']} | {r['tokens']} | {fmt(r['n_pieces'])} | {s['startup_s']:.1f} | "
                     f"{s['setup_s']:.1f} | {rank_startup:.1f} | {s['VmHWM']:,.0f} | {s['RssAnon']:,.0f} | {ranks} | "
                     f"{s['crop_ms']:.3f} | {s['crop_recipe_ms']:.3f} | {s['pick_ms']:.4f} | {fmt(e.get('VmHWM'))} | "
                     f"{fmt(e.get('eval_s'), '.1f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["10M", "100M", "1B"], choices=list(SIZES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mozart-scale"))
    parser.add_argument("--old", type=Path, default=None, help="checkout of the code before the token store")
    parser.add_argument("--old-max", default="100M", choices=list(SIZES), help="largest size to try the old code on")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per measured process")
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()[0]
    for size in args.sizes:
        root = args.workdir / size
        shutil.rmtree(root, ignore_errors=True)
        with_old = args.old is not None and SIZES[size] <= SIZES[args.old_max]
        started = time.time()
        corpus = write_corpus(root, SIZES[size], with_shards=with_old)
        print(f"{size}: wrote {corpus['n_tokens']:,} tokens, {corpus['n_pieces']:,} pieces in "
              f"{time.time() - started:.0f} s", file=sys.stderr)
        try:
            runs = [("token store (this branch)", REPO)] + ([("before (6550630)", args.old)] if with_old else [])
            for code, code_dir in runs:
                result = measure(code_dir, root, args.timeout)
                rows.append({"code": code, "tokens": size, **corpus, **result})
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    text = table(rows) + f"\n\nLoad average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end."
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    print(text)


if __name__ == "__main__":
    main()
