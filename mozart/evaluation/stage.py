"""The evaluate stage: generated samples beside real held-out music (H1/H4/GS and more), test-split bits per token
and style adherence -> metrics/eval.json + metrics/eval_composers.tsv."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from mozart.data.store import TokenStoreReader
from mozart.infra.atomic import read_json
from mozart.errors import ConfigError, DataError
from mozart.evaluation.metrics import json_safe

MIDI_SUFFIXES = (".mid", ".midi")


MAX_STYLE_TRAIN_PIECES = 400   # bounds the stage's time on a big corpus; a random subset of the train split
STYLE_SEGMENTS_PER_PIECE = 4   # bar segments per real piece for the style classifier
DEFAULT_BARS = 16              # crop length when no generated sample could be measured
NLL_BATCH_SIZE = 4             # windows per forward pass


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


def _style(train, test, samples, gen_scores, decoded, names, crop_bars: int, seed: int) -> tuple[dict, dict]:
    """Train the composer classifier on real train segments; (summary metrics, per-composer-id adherence)."""
    from mozart.evaluation import style

    def featurise(frame):
        x, y = [], []
        for idx, composer_id in zip(frame.index, frame["composer_id"]):
            if decoded.get(idx) is not None:
                for f in style.segment_features(decoded[idx], crop_bars, STYLE_SEGMENTS_PER_PIECE):
                    x.append(f)
                    y.append(names[int(composer_id)])
        return x, y

    x_train, y_train = featurise(train)
    x_test, y_test = featurise(test)
    out = {"style_accuracy_cfg": math.nan, "style_accuracy_nocfg": math.nan, "real_test_style_accuracy": math.nan,
           "style_chance": math.nan, "style_majority_rate": math.nan, "style_classes": len(set(y_train)),
           "style_train_segments": len(y_train), "style_test_segments": len(y_test)}
    if len(set(y_train)) < 2:
        print("warning: the train split has fewer than two composers; style adherence is not measured",
              file=sys.stderr)
        return out, {}
    model = style.fit_classifier(x_train, y_train, seed)
    out["real_test_style_accuracy"] = style.accuracy(model, x_test, y_test)
    levels = style.chance_levels(y_train, y_test)
    out["style_chance"], out["style_majority_rate"] = levels["chance"], levels["majority_rate"]
    # free samples conditioned on a composer: does the classifier name that composer?
    groups: dict[tuple[int, bool], list[tuple[str | None, str]]] = {}
    for s, score in zip(samples, gen_scores):
        if s.get("kind") != "free" or int(s.get("composer_id", 0)) == 0:
            continue
        feats = style.segment_features(score) if score is not None else []
        predicted = str(model.predict(feats[:1])[0]) if feats else None  # unreadable or empty: a miss
        key = (int(s["composer_id"]), float(s.get("cfg_scale", 1.0)) != 1.0)
        groups.setdefault(key, []).append((predicted, names[int(s["composer_id"])]))
    for with_cfg, name in ((True, "style_accuracy_cfg"), (False, "style_accuracy_nocfg")):
        pairs = [p for (cid, cfg), ps in groups.items() if cfg == with_cfg for p in ps]
        out[name] = style.adherence([p for p, _ in pairs], [w for _, w in pairs])
        out[f"n_style_{name.rsplit('_', 1)[1]}"] = len(pairs)
    per_composer = {key: style.adherence([p for p, _ in ps], [w for _, w in ps]) for key, ps in groups.items()}
    return out, per_composer


def run_stage(cfg, seed: int, repo_root: Path, params: dict) -> dict:
    """The evaluate stage: read samples, prepared data, tokens and the final model; write metrics/eval.json and
    metrics/eval_composers.tsv; log to MLflow. Returns the eval.json content."""
    import numpy as np
    import pandas as pd
    import symusic
    from tqdm import tqdm

    from mozart.infra import tracking
    from mozart.infra.atomic import write_json, write_text
    from mozart.infra.device import pick_device, seed_everything
    from mozart.evaluation.metrics import piece_metrics
    from mozart.model.gpt import load_model
    from mozart.data.tokenize import load_tokenizer

    if cfg.grid < 1 or cfg.max_real_pieces < 0 or cfg.nll_batches < 1:
        raise ConfigError(f"params.yaml: evaluate.grid ({cfg.grid}) and evaluate.nll_batches ({cfg.nll_batches}) must "
                          f"be >= 1 and evaluate.max_real_pieces ({cfg.max_real_pieces}) >= 0")
    seed_everything(seed)
    repo_root = Path(repo_root)
    samples_dir, prepared = repo_root / "data" / "samples", repo_root / "data" / "prepared"
    tokens_dir, model_dir = repo_root / "data" / "tokens", repo_root / "models" / "final"
    manifest = read_json(samples_dir / "manifest.json", "run `dvc repro sample` first")
    samples = manifest.get("samples") or []
    if not samples:
        raise DataError(f"{samples_dir / 'manifest.json'} lists no samples: check the sample params and rerun "
                        "`dvc repro sample`")
    names = read_json(prepared / "composers.json", "run `dvc repro prepare` first")["names"]
    try:
        meta = pd.read_parquet(prepared / "metadata.parquet")
    except FileNotFoundError:
        raise DataError(f"{prepared / 'metadata.parquet'} is missing: run `dvc repro prepare` first") from None
    tokenizer = load_tokenizer(tokens_dir / "tokenizer.json")
    reader = TokenStoreReader(prepared)

    # 1. generated samples
    gen_rows, gen_scores = [], []
    for s in tqdm(samples, desc="generated", unit="sample", disable=None, leave=False):
        try:
            score = symusic.Score(str(samples_dir / s["path"]))
            gen_rows.append(piece_metrics(score, cfg.grid, cfg.use_time_signatures))
        except Exception as exc:  # a missing or broken sample counts against decodability, not a crash
            score = None
            gen_rows.append({"error": str(exc)})
        gen_scores.append(score)
    measured = [r["n_bars"] for r in gen_rows if "error" not in r and r["n_bars"] > 0]
    crop_bars = int(np.median(measured)) if measured else DEFAULT_BARS

    # 2. real test pieces (and train pieces for the style classifier), decoded from the token shards
    originals = meta[meta["transpose"] == 0]
    train = _pick(originals[originals["split"] == "train"], MAX_STYLE_TRAIN_PIECES, seed)
    test = _pick(originals[originals["split"] == "test"], MAX_STYLE_TRAIN_PIECES, seed)
    real = _pick(test, cfg.max_real_pieces, seed)
    wanted = pd.concat([train, test])
    decoded = dict(zip(wanted.index, _decode_rows(wanted, reader, tokenizer, "decode real")))
    real_rows = [piece_metrics(decoded[i], cfg.grid, cfg.use_time_signatures, max_bars=crop_bars)
                 for i in real.index if decoded.get(i) is not None]

    # 3. style adherence
    style_out, style_by_key = _style(train, test, samples, gen_scores, decoded, names, crop_bars, seed)

    # 4. test-split bits per token, per composer
    device = pick_device(cfg.device)
    model = load_model(model_dir, device)
    model.label_smoothing = 0.0
    bits_by_composer: dict[int, tuple[float, int]] = {}
    test_all = originals[originals["split"] == "test"]
    for composer_id, rows in tqdm(list(test_all.groupby("composer_id")), desc="test NLL", unit="composer",
                                  disable=None, leave=False):
        bits_by_composer[int(composer_id)] = test_bits_per_token(model, rows, reader, device, cfg.nll_batches, seed)
    total_tokens = sum(n for _, n in bits_by_composer.values())
    total_bits = sum(b * n for b, n in bits_by_composer.values() if n)
    del model

    keys = ("h1", "h4", "gs", "note_density", "pitch_range", "mean_polyphony", "empty_bar_fraction", "n_bars")
    generated = {k: _mean_of(gen_rows, k) for k in keys}
    real_means = {k: _mean_of(real_rows, k) for k in keys}
    generated["n_pieces"] = sum("error" not in r for r in gen_rows)
    real_means["n_pieces"] = len(real_rows)
    decodable = [bool(s.get("decodable", False)) for s in samples]
    result = {
        "generated": generated,
        "real": real_means,
        "gap": {k: abs(generated[k] - real_means[k]) for k in ("h1", "h4", "gs")},
        "test_bits_per_token": total_bits / total_tokens if total_tokens else math.nan,
        "test_tokens": total_tokens,
        "decodable_fraction": sum(decodable) / len(decodable),
        "crop_bars": crop_bars,
        **style_out,
    }

    # per-composer table: every real composer with test pieces or generated samples
    composer_ids = sorted({int(c) for c in test_all["composer_id"]} |
                          {int(s.get("composer_id", 0)) for s in samples} - {0})
    lines = ["\t".join(("composer", "style_accuracy", "style_accuracy_nocfg", "test_bits_per_token", "n_generated",
                        "h1", "h4", "gs"))]
    for cid in composer_ids:
        mine = [r for s, r in zip(samples, gen_rows) if int(s.get("composer_id", 0)) == cid]
        bits = bits_by_composer.get(cid, (math.nan, 0))[0]
        cells = [style_by_key.get((cid, True), math.nan), style_by_key.get((cid, False), math.nan), bits, len(mine),
                 _mean_of(mine, "h1"), _mean_of(mine, "h4"), _mean_of(mine, "gs")]
        lines.append("\t".join([names[cid]] + [_tsv(v) for v in cells]))

    out_dir = repo_root / "metrics"
    write_json(out_dir / "eval.json", json_safe(result))
    write_text(out_dir / "eval_composers.tsv", "\n".join(lines) + "\n")
    with tracking.stage_run("evaluate", params, repo_root) as run:
        run.log_metrics(_flat_numbers(result))
        run.log_artifact(out_dir / "eval.json")
        run.log_artifact(out_dir / "eval_composers.tsv")
    return result


def _tsv(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _flat_numbers(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}{k}"] = v
    return out
