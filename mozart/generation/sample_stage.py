"""The sample stage: a fixed set of pieces from the trained model for evaluate and render (docs/CONTRACTS.md).

Free samples: for each composer (`sample.composers`, default the `n_top_composers` with most pieces) and the
unconditional model, `n_per_composer` pieces of `bars` bars, once with `cfg_scale` and once without guidance (1.0);
unconditional pieces use 1.0 only. Continuations: `n_prompts` test-split pieces (chosen with the seed among those
long enough), their first `prompt_bars` bars read from the token shards, continued to `continuation_bars` bars with
their own composer's id and guidance.

Rows of one guidance setting share a batch whatever their composer (composer_id is per row); a continuation is a
batch of its own (rows of a batch share one prompt length). Every batch has its own seed (`seed` + batch index), so
reruns give the same pieces.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mozart.infra.atomic import atomic_dir, write_json
from mozart.config import SampleConfig
from mozart.errors import DataError, MozartError
from mozart.generation.engine import (DEFAULT_BPM, LoadedModel, cut_to_bars, decode_piece, load_model_dir, resolve_composer,
                             sample_tokens, score_seconds)
from mozart.generation.decoder import SamplingSettings


@dataclass
class Job:
    """One piece to generate."""
    kind: str                     # "free" | "continuation"
    composer_id: int
    composer: str
    cfg_scale: float
    n_bars: int
    prompt_ids: list[int] | None = None
    prompt_piece_id: str | None = None
    prompt_bars: int | None = None
    sample_id: str = ""


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def pick_composers(cfg: SampleConfig, composers: dict[str, Any]) -> list[tuple[int, str]]:
    """(composer_id, name) to sample: the configured list, or the largest composers; unconditional (0) last."""
    if cfg.composers:
        chosen = [resolve_composer(name, composers) for name in cfg.composers]
    else:
        skip = {composers.get("unconditional_id", 0), composers.get("other_id")}
        counts = composers.get("n_pieces") or [0] * len(composers["names"])
        ranked = sorted((i for i in range(len(composers["names"])) if i not in skip), key=lambda i: (-counts[i], i))
        chosen = [(i, composers["names"][i]) for i in ranked[:cfg.n_top_composers]]
        chosen.append((0, "unconditional"))
    return list(dict.fromkeys(chosen))


def free_jobs(cfg: SampleConfig, chosen: list[tuple[int, str]]) -> list[Job]:
    jobs = []
    for composer_id, name in chosen:
        scales = [1.0] if composer_id == 0 else list(dict.fromkeys([cfg.cfg_scale, 1.0]))
        for scale in scales:
            for k in range(cfg.n_per_composer):
                jobs.append(Job("free", composer_id, name, scale, cfg.bars,
                                sample_id=f"free-{composer_id:02d}-{slug(name)}-cfg{scale:g}-{k + 1}"))
    return jobs


def continuation_jobs(cfg: SampleConfig, seed: int, lm: LoadedModel, prepared_dir: Path, tokens_dir: Path) -> list[Job]:
    """Prompts from `n_prompts` test pieces with more than `prompt_bars` bars, chosen with the seed."""
    import pyarrow.parquet as pq

    if cfg.n_prompts <= 0:
        return []
    meta_path = prepared_dir / "metadata.parquet"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} is missing: run the prepare stage first (dvc repro prepare)")
    meta = pq.read_table(meta_path).to_pandas()
    test = meta[(meta["split"] == "test") & (meta["transpose"] == 0)].sort_values("piece_id").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(test))
    names = lm.composers["names"]
    jobs: list[Job] = []
    shards: dict[str, Any] = {}
    for i in order:
        if len(jobs) == cfg.n_prompts:
            break
        row = test.iloc[int(i)]
        if row["shard"] not in shards:
            shards[row["shard"]] = pq.read_table(tokens_dir / row["shard"], columns=["piece_id", "tokens"])
        table = shards[row["shard"]]
        ids = table.column("tokens")[int(row["row"])].as_py()
        try:
            prompt = cut_to_bars(ids, lm.bar_id, cfg.prompt_bars)
        except MozartError:
            continue  # too short for the prompt
        composer_id = int(row["composer_id"])
        if composer_id >= lm.model.config.n_composers:
            continue
        scale = 1.0 if composer_id == 0 else cfg.cfg_scale
        jobs.append(Job("continuation", composer_id, names[composer_id], scale, cfg.continuation_bars,
                        prompt_ids=[lm.model.config.bos_id, *prompt], prompt_piece_id=str(row["piece_id"]),
                        prompt_bars=cfg.prompt_bars,
                        sample_id=f"cont-{len(jobs) + 1}-{slug(str(row['piece_id']))[:60]}"))
    if len(jobs) < cfg.n_prompts:
        print(f"warning: only {len(jobs)} of {cfg.n_prompts} continuation prompts: the test split has few pieces "
              f"longer than {cfg.prompt_bars} bars")
    return jobs


def batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Free jobs grouped by guidance scale in chunks of batch_size; each continuation alone."""
    out: list[list[Job]] = []
    free = [j for j in jobs if j.kind == "free"]
    for scale in dict.fromkeys(j.cfg_scale for j in free):
        group = [j for j in free if j.cfg_scale == scale]
        out += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    out += [[j] for j in jobs if j.kind == "continuation"]
    return out


def run_sample(cfg: SampleConfig, seed: int, model_dir: Path, prepared_dir: Path, tokens_dir: Path,
               samples_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Generate every job, write `samples_dir` (MIDI + manifest.json) atomically; return the stage metrics."""
    from tqdm import tqdm

    lm = load_model_dir(model_dir, cfg.device)
    jobs = free_jobs(cfg, pick_composers(cfg, lm.composers))
    jobs += continuation_jobs(cfg, seed, lm, prepared_dir, tokens_dir)
    bpm = cfg.bpm if cfg.bpm > 0 else DEFAULT_BPM  # shard tokens carry no tempo: "prompt tempo" falls back to 120
    keep_tempo_tokens = cfg.bpm <= 0 and bool(lm.tokenizer.config.use_tempos)
    records, reached, new_tokens, gen_seconds = [], [], 0, 0.0
    with atomic_dir(samples_dir) as tmp:
        for b, batch in enumerate(tqdm(batches(jobs, cfg.batch_size), desc="sample batches", disable=not progress)):
            settings = SamplingSettings.from_config(cfg, cfg_scale=batch[0].cfg_scale)
            gen = sample_tokens(lm, [j.composer_id for j in batch], settings, n_bars=batch[0].n_bars,
                                prompt_ids=batch[0].prompt_ids, seed=seed + b, max_new_tokens=cfg.max_tokens)
            new_tokens += sum(gen.n_new)
            gen_seconds += gen.seconds
            for row, job in enumerate(batch):
                ids = gen.tokens[row]
                score, decodable = decode_piece(lm.tokenizer, ids, None if keep_tempo_tokens else bpm)
                score.dump_midi(str(tmp / f"{job.sample_id}.mid"))
                records.append({
                    "id": job.sample_id, "kind": job.kind, "composer": job.composer, "composer_id": job.composer_id,
                    "cfg_scale": job.cfg_scale, "temperature": cfg.temperature, "top_k": cfg.top_k,
                    "top_p": cfg.top_p, "repetition_penalty": cfg.repetition_penalty, "bpm": bpm,
                    "n_bars": int(gen.n_bars[row]), "n_tokens": len(ids), "seconds": round(score_seconds(score), 3),
                    "decodable": bool(decodable), "path": f"{job.sample_id}.mid", "token_ids": [int(t) for t in ids],
                    "prompt_piece_id": job.prompt_piece_id, "prompt_bars": job.prompt_bars,
                    "target_bars": job.n_bars, "stop_reason": gen.stop_reason[row], "end": cfg.end,
                })
                reached.append(gen.stop_reason[row] != "max_tokens")
        settings_record = {**dataclasses.asdict(cfg), "seed": seed, "model_dir": str(model_dir)}
        write_json(tmp / "manifest.json", {"settings": settings_record, "samples": records})
    n = len(records)
    return {
        "n_samples": n,
        "n_free": sum(r["kind"] == "free" for r in records),
        "n_continuations": sum(r["kind"] == "continuation" for r in records),
        "tokens_per_s": round(new_tokens / max(gen_seconds, 1e-9), 1),
        "new_tokens": new_tokens,
        "generation_seconds": round(gen_seconds, 2),
        "decodable_fraction": sum(r["decodable"] for r in records) / n if n else 0.0,
        "mean_bars": float(np.mean([r["n_bars"] for r in records])) if n else 0.0,
        "mean_seconds": float(np.mean([r["seconds"] for r in records])) if n else 0.0,
        "reached_target_fraction": sum(reached) / n if n else 0.0,
        "grammar": lm.grammar is not None,
    }


def run(cfg: SampleConfig, seed: int, paths) -> dict[str, Any]:
    """The sample stage (stage contract: mozart/paths.py SamplePaths): write data/samples and metrics/sample.json;
    returns the metrics."""
    metrics = run_sample(cfg, seed, paths.model_dir, paths.prepared_dir, paths.tokens_dir, paths.samples_dir)
    write_json(paths.metrics_json, metrics)
    return metrics
