"""The evaluate stage: generated samples beside real held-out music (H1/H4/GS, structureness SI and more),
test-split bits per token, memorization, and the judged set (mozart.evaluation.judged: style accuracy, decodability,
H1/H4/GS gaps, memorization and SI per guidance scale) -> metrics/eval.json, metrics/eval_composers.tsv,
metrics/eval_judged.tsv, metrics/eval_copies.tsv and data/judged/."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mozart.data.store import TokenStoreReader
from mozart.infra.atomic import read_json
from mozart.errors import DataError
from mozart.evaluation.metrics import json_safe
from mozart.evaluation.endings import ending_metrics
from mozart.evaluation.memorization import BarVocab, copied_runs, copy_rates, memorization_metrics, train_index
from mozart.evaluation.judged import generate_judged, judge, judged_composers, scale_key, tsv_cell

MAX_STYLE_TRAIN_PIECES = 400   # bounds the stage's time on a big corpus; a random subset of the train split
DEFAULT_BARS = 16              # crop length when no generated sample could be measured
NLL_BATCH_SIZE = 4             # windows per forward pass
# the metadata columns the stage uses: at a million pieces the string columns (piece_id, work_id, composer) would be
# most of its memory; the row order (the index the seeded choices use) is unchanged
META_COLUMNS = ["composer_id", "split", "transpose", "store_row"]


def _decode_rows(rows, reader: TokenStoreReader, tokenizer, desc: str) -> list:
    """Decode metadata rows to symusic Scores (None where decoding fails); reads only these rows from the store."""
    from tqdm import tqdm

    from mozart.data.tokenize import decode_ids

    scores = []
    for split, row in tqdm(list(zip(rows["split"], rows["store_row"])), desc=desc, unit="piece", disable=None,
                           leave=False):
        try:
            scores.append(decode_ids(tokenizer, reader.ids(split, row)))
        except Exception:  # a real piece that does not decode is left out, not fatal
            scores.append(None)
    return scores


def _pick(frame, n: int, seed: int):
    """Up to n rows chosen at random (seeded), kept in metadata order so the choice is stable and readable."""
    if len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed).sort_index()


def context_windows(rows, reader: TokenStoreReader, config, n_windows: int,
                    seed: int) -> list[tuple[list[int], int]]:
    """Up to `n_windows` windows of context + 1 tokens (inputs and their targets) cut from the given metadata rows,
    BOS first, each with its row's composer_id: a seeded choice, kept in row order.

    Each row's `[BOS] + tokens` is cut at 0, context, 2 context, ... (n tokens give ceil(n / context) windows of at
    least 2 tokens). The windows are counted from the store's offsets and only the chosen ones are read."""
    import numpy as np

    splits, store_rows = rows["split"].to_numpy(), rows["store_row"].to_numpy(dtype=np.int64)
    lengths = np.array([reader.store(s).offsets[r + 1] - reader.store(s).offsets[r]
                        for s, r in zip(splits, store_rows)], dtype=np.int64)
    counts = -(-lengths // config.context)  # ceil; 0 for an empty row
    first = np.concatenate([[0], np.cumsum(counts)])  # window number of each row's first window
    order = np.random.default_rng(seed).permutation(int(first[-1]))[:n_windows]
    windows = []
    for w in sorted(order):
        i = int(np.searchsorted(first, w, side="right") - 1)
        start = (w - first[i]) * config.context  # in [BOS] + tokens: token k sits at position k + 1
        piece = reader.store(splits[i]).piece(store_rows[i])
        chunk = piece[max(0, start - 1):start + config.context].tolist()
        windows.append(([config.bos_id] + chunk if start == 0 else chunk, int(rows["composer_id"].iloc[i])))
    return windows


def test_bits_per_token(model, rows, reader: TokenStoreReader, device, n_windows: int, seed: int) -> tuple[float, int]:
    """Mean bits per token of the model on up to `n_windows` context-sized windows of the given test rows
    (conditioned on each row's composer_id), plus the number of predicted tokens. Targets equal to pad are ignored."""
    import torch
    import torch.nn.functional as F

    cfg = model.config
    windows = context_windows(rows, reader, cfg, n_windows, seed)
    if not windows:
        return math.nan, 0
    total_nats, total_tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), NLL_BATCH_SIZE):
            batch = windows[i:i + NLL_BATCH_SIZE]
            width = max(len(c) for c, _ in batch)
            seq = torch.full((len(batch), width), cfg.pad_id, dtype=torch.long)
            for j, (chunk, _) in enumerate(batch):
                seq[j, :len(chunk)] = torch.tensor(chunk)
            targets = seq[:, 1:].clone()
            for j, (chunk, _) in enumerate(batch):
                targets[j, len(chunk) - 1:] = cfg.pad_id
            composer = torch.tensor([c for _, c in batch], dtype=torch.long)
            logits, _ = model(seq[:, :-1].to(device), composer.to(device))
            nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1).to(device),
                                   ignore_index=cfg.pad_id, reduction="sum")
            total_nats += float(nats)
            total_tokens += int((targets != cfg.pad_id).sum())
    return (total_nats / total_tokens / math.log(2) if total_tokens else math.nan), total_tokens


def _mean_of(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if "error" not in r and r.get(key) is not None and not math.isnan(r[key])]
    return float(sum(values) / len(values)) if values else math.nan


@dataclass
class Inputs:
    """What the evaluate stage reads, loaded once: samples, composer names, test-split metadata, tokenizer, shards."""
    samples: list[dict]
    names: list[str]
    meta: Any                   # data/prepared/metadata.parquet (pandas)
    tokenizer: Any
    reader: TokenStoreReader
    other_id: int | None = None  # the id rare composers share (composers.json)


def load_inputs(paths) -> Inputs:
    import pandas as pd

    from mozart.data.tokenize import load_tokenizer

    manifest_path = paths.samples_dir / "manifest.json"
    samples = read_json(manifest_path, "run `dvc repro sample` first").get("samples") or []
    if not samples:
        raise DataError(f"{manifest_path} lists no samples: check the sample params and rerun `dvc repro sample`")
    composers = read_json(paths.prepared_dir / "composers.json", "run `dvc repro prepare` first")
    try:
        meta = pd.read_parquet(paths.prepared_dir / "metadata.parquet", columns=META_COLUMNS)
    except FileNotFoundError:
        raise DataError(f"{paths.prepared_dir / 'metadata.parquet'} is missing: run `dvc repro prepare` "
                        "first") from None
    tokenizer = load_tokenizer(paths.tokens_dir / "tokenizer.json")
    return Inputs(samples, composers["names"], meta, tokenizer, TokenStoreReader(paths.prepared_dir),
                  composers.get("other_id"))


def generated_metrics(cfg, samples: list[dict], samples_dir: Path) -> tuple[list[dict], list, int]:
    """Phase 1: metrics of every generated sample (a broken one is an error row, not a crash), their scores, and the
    crop length for real pieces (the median generated bar count)."""
    import numpy as np
    import symusic
    from tqdm import tqdm

    from mozart.evaluation.metrics import piece_metrics

    rows, scores = [], []
    for s in tqdm(samples, desc="generated", unit="sample", disable=None, leave=False):
        try:
            score = symusic.Score(str(samples_dir / s["path"]))
            rows.append(piece_metrics(score, cfg.grid, cfg.use_time_signatures))
        except Exception as exc:  # a missing or broken sample counts against decodability, not a crash
            score = None
            rows.append({"error": str(exc)})
        scores.append(score)
    measured = [r["n_bars"] for r in rows if "error" not in r and r["n_bars"] > 0]
    return rows, scores, int(np.median(measured)) if measured else DEFAULT_BARS


def real_metrics(cfg, seed: int, inputs: Inputs, crop_bars: int,
                 style_ids: set[int]) -> tuple[Any, Any, dict, list[dict], list]:
    """Phase 2: real test pieces, and train and test pieces of the `style_ids` composers for the style classifier,
    decoded from the token shards; the test pieces' metrics are of their first `crop_bars` bars. Returns (style train
    rows, style test rows, decoded scores by row, metrics of the real pieces, the real pieces' scores)."""
    import pandas as pd

    from mozart.evaluation.metrics import piece_metrics

    originals = inputs.meta[inputs.meta["transpose"] == 0]
    styled = originals[originals["composer_id"].isin(sorted(style_ids))]
    train = _pick(styled[styled["split"] == "train"], MAX_STYLE_TRAIN_PIECES, seed)
    test = _pick(styled[styled["split"] == "test"], MAX_STYLE_TRAIN_PIECES, seed)
    real = _pick(_pick(originals[originals["split"] == "test"], MAX_STYLE_TRAIN_PIECES, seed), cfg.max_real_pieces,
                 seed)
    wanted = pd.concat([train, test, real])
    wanted = wanted[~wanted.index.duplicated()]
    decoded = dict(zip(wanted.index, _decode_rows(wanted, inputs.reader, inputs.tokenizer, "decode real")))
    rows = [piece_metrics(decoded[i], cfg.grid, cfg.use_time_signatures, max_bars=crop_bars)
            for i in real.index if decoded.get(i) is not None]
    return train, test, decoded, rows, [decoded.get(i) for i in real.index]


def test_bits_by_composer(cfg, seed: int, inputs: Inputs, model_dir: Path) -> dict[int, tuple[float, int]]:
    """Phase 4: test-split bits per token of the final model, per composer id: {id: (bits/token, tokens)}."""
    from tqdm import tqdm

    from mozart.infra.device import pick_device
    from mozart.model.directory import open_model_dir

    device = pick_device(cfg.device)
    model = open_model_dir(model_dir, device).model  # all four files checked against each other
    model.label_smoothing = 0.0
    originals = inputs.meta[inputs.meta["transpose"] == 0]
    test_all = originals[originals["split"] == "test"]
    return {int(cid): test_bits_per_token(model, rows, inputs.reader, device, cfg.nll_batches, seed)
            for cid, rows in tqdm(list(test_all.groupby("composer_id")), desc="test NLL", unit="composer",
                                  disable=None, leave=False)}


def structure_phase(cfg, render, inputs: Inputs, samples_dir: Path, real_scores: list, crop_bars: int) -> dict:
    """Phase 5 (when evaluate.structure): MusDr's structureness SI of the free samples and of the real test pieces
    (cropped like them), from audio rendered with render.soundfont (mozart/evaluation/structure.py)."""
    if not cfg.structure:
        return {}
    from mozart.config import RenderConfig
    from mozart.evaluation.structure import structure_metrics

    free = [samples_dir / s["path"] for s in inputs.samples if s.get("kind") == "free" and s.get("path")]
    return structure_metrics(free, real_scores, crop_bars, (render or RenderConfig()).soundfont,
                             cfg.use_time_signatures)


def judged_extras(cfg, render, judged, report, index, judged_dir: Path) -> None:
    """Phase 3b: per guidance scale, how much of the judged set copies the train split (memorization) and, when
    evaluate.structure, its structureness SI; merged into report.section[cfg_<scale>] (eval.json "judged")."""
    by_scale = judged.by_scale()
    for scale, pieces in by_scale.items():
        rates = copy_rates(copied_runs(index, [p.token_ids for p in pieces]))
        report.section[scale_key(scale)].update({f"memorization_{k}": v for k, v in rates.items() if k != "n_pieces"})
    if not cfg.structure:
        return
    from mozart.config import RenderConfig
    from mozart.evaluation.structure import mean_indicators, structureness_of_midis

    # every scale's pieces in one batch: one pool of (spawned) workers, not one per scale
    scored = [(scale, judged_dir / p.path) for scale, pieces in by_scale.items() for p in pieces if p.decodable]
    rows = structureness_of_midis([path for _, path in scored], (render or RenderConfig()).soundfont,
                                  desc="SI judged")
    for scale in by_scale:
        means = mean_indicators([row for (s, _), row in zip(scored, rows) if s == scale])
        at = report.section[scale_key(scale)]
        at.update({k: v for k, v in means.items() if k != "n"}, si_n=means["n"])  # "n" is the judged count


def composer_table(inputs: Inputs, gen_rows: list[dict], style_by_key: dict, bits: dict) -> str:
    """metrics/eval_composers.tsv: every real composer with test pieces or generated samples."""
    meta, samples, names = inputs.meta, inputs.samples, inputs.names
    test_ids = {int(c) for c in meta[(meta["transpose"] == 0) & (meta["split"] == "test")]["composer_id"]}
    composer_ids = sorted(test_ids | {int(s.get("composer_id", 0)) for s in samples} - {0})
    lines = ["\t".join(("composer", "style_accuracy", "style_accuracy_nocfg", "test_bits_per_token", "n_generated",
                        "h1", "h4", "gs"))]
    for cid in composer_ids:
        mine = [r for s, r in zip(samples, gen_rows) if int(s.get("composer_id", 0)) == cid]
        cells = [style_by_key.get((cid, True), math.nan), style_by_key.get((cid, False), math.nan),
                 bits.get(cid, (math.nan, 0))[0], len(mine), _mean_of(mine, "h1"), _mean_of(mine, "h4"),
                 _mean_of(mine, "gs")]
        lines.append("\t".join([names[cid]] + [tsv_cell(v) for v in cells]))
    return "\n".join(lines) + "\n"


def run(cfg, seed: int, paths, sample, render=None) -> dict:
    """The evaluate stage (stage contract: mozart/paths.py EvaluatePaths; `sample` is the sample section, whose
    sampling settings the judged set uses; `render` (a RenderConfig; defaults when None) names the soundfont for SI's
    audio): generated samples beside real test music, the judged set per guidance scale, test bits per token,
    memorization, structureness; writes metrics/eval.json, metrics/eval_composers.tsv, metrics/eval_judged.tsv,
    metrics/eval_copies.tsv and data/judged/, and returns eval.json's content."""
    from mozart.infra.atomic import write_json, write_text
    from mozart.infra.device import seed_everything

    seed_everything(seed)
    inputs = load_inputs(paths)
    chosen = judged_composers(inputs.meta, inputs.names, inputs.other_id, cfg.n_top_composers)
    gen_rows, gen_scores, crop_bars = generated_metrics(cfg, inputs.samples, paths.samples_dir)
    train, test, decoded, real_rows, real_scores = real_metrics(cfg, seed, inputs, crop_bars, {c for c, _ in chosen})
    judged = generate_judged(cfg, sample, seed, paths.model_dir, chosen, paths.judged_dir)
    report = judge(cfg, sample, judged, train, test, decoded, real_rows, seed)
    index = train_index(inputs.meta, inputs.reader, BarVocab.from_vocab(inputs.tokenizer.vocab), seed)
    judged_extras(cfg, render, judged, report, index, paths.judged_dir)
    bits = test_bits_by_composer(cfg, seed, inputs, paths.model_dir)
    copies, copies_tsv = memorization_metrics(inputs, paths.samples_dir, _pick(test, cfg.max_real_pieces, seed),
                                              crop_bars, seed, index)
    total_tokens = sum(n for _, n in bits.values())
    total_bits = sum(b * n for b, n in bits.values() if n)

    keys = ("h1", "h4", "gs", "note_density", "pitch_range", "mean_polyphony", "empty_bar_fraction", "n_bars")
    generated = {k: _mean_of(gen_rows, k) for k in keys}
    real_means = {k: _mean_of(real_rows, k) for k in keys}
    generated["n_pieces"] = sum("error" not in r for r in gen_rows)
    real_means["n_pieces"] = len(real_rows)
    decodable = [bool(s.get("decodable", False)) for s in inputs.samples]
    result = {
        "generated": generated,
        "real": real_means,
        "gap": {k: abs(generated[k] - real_means[k]) for k in ("h1", "h4", "gs")},
        "test_bits_per_token": total_bits / total_tokens if total_tokens else math.nan,
        "test_tokens": total_tokens,
        "decodable_fraction": sum(decodable) / len(decodable),
        "crop_bars": crop_bars,
        **ending_metrics(inputs.samples, gen_scores, real_scores, cfg.grid, cfg.use_time_signatures),
        **report.flat,
        **copies,
        **structure_phase(cfg, render, inputs, paths.samples_dir, real_scores, crop_bars),
        "judged": report.section,
    }
    write_json(paths.metrics_json, json_safe(result))
    write_text(paths.composers_tsv, composer_table(inputs, gen_rows, report.style_by_key, bits))
    write_text(paths.judged_tsv, report.tsv)
    write_text(paths.copies_tsv, copies_tsv)
    return result
