"""The judged set: free pieces the evaluate stage generates itself, enough of them to tell guidance scales apart.

The sample stage's few free pieces (4 per setting) cannot tell 30 % style accuracy from 60 %: a 95 % interval at
n = 4 spans most of [0, 1]. So for each of the `evaluate.n_top_composers` largest composers (by train-split pieces;
the unconditional id and OTHER are never judged) the stage generates `evaluate.n_per_composer` free pieces of
`sample.bars` bars with the sample section's sampling settings, at every guidance scale of
sorted({1, sample.cfg_scale} | evaluate.cfg_sweep), and judges each scale:

- style accuracy: a composer classifier (mozart.evaluation.style) trained on real train segments of the judged
  composers only, so chance is 1 / n_top, names each piece's composer; 95 % Wilson score intervals. Beside it the
  classifier's own accuracy on real test pieces of those composers, per `sample.bars`-bar segment (what a judged piece
  is) and per piece (the mean of its segments' class probabilities, then the most probable composer);
- the decodable fraction and H1/H4/GS means, with their gaps to the real test pieces (absolute and relative).

Rows of one scale share batches whatever their composer; batch b of every scale is seeded `seed + b`, so every scale
starts from the same random streams. The pieces stay in memory (`JudgedSet.by_scale()`: token ids, scores, composer
ids) for the stage's other per-scale metrics, and are written to data/judged/ (MIDI + manifest.json).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Z_95 = 1.959963984540054          # the two-sided 95 % normal quantile
STYLE_SEGMENTS_PER_PIECE = 4      # bar segments per real piece for the style classifier
KONG_PER_PIECE_ACCURACY = 0.739   # per-piece accuracy of a 10-composer classifier (Kong et al., GiantMIDI-Piano)
GAP_KEYS = ("h1", "h4", "gs")


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (NaN, NaN for n = 0). Unlike p ± z·sqrt(p(1-p)/n) it stays in
    [0, 1] and does not shrink to a point at 0/n or n/n, which matters at a judged set's n."""
    if n <= 0:
        return math.nan, math.nan
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0/n and n/n the bound is exactly 0 (1); the formula leaves a rounding error there
    return (0.0 if correct <= 0 else max(0.0, centre - half)), (1.0 if correct >= n else min(1.0, centre + half))


def guidance_scales(cfg, sample) -> list[float]:
    """Every scale judged: no guidance, the sample stage's scale and `evaluate.cfg_sweep`, ascending."""
    return sorted({1.0, float(sample.cfg_scale), *(float(s) for s in cfg.cfg_sweep)})


def scale_key(scale: float) -> str:
    """eval.json's name for one scale's section of "judged": cfg_1, cfg_1p5, ... (no dot: `dvc metrics` and MLflow
    flatten nested keys with dots, so "cfg_1.5" would read as a key "5" under "cfg_1")."""
    return f"cfg_{scale:g}".replace(".", "p")


def judged_composers(meta, names: list[str], other_id: int | None, n_top: int) -> list[tuple[int, str]]:
    """(id, name) of the `n_top` composers with most train-split pieces (originals, not transpositions), ties by id;
    the unconditional id 0 and OTHER are skipped."""
    train = meta[(meta["split"] == "train") & (meta["transpose"] == 0)]
    counts = train["composer_id"].value_counts()
    ids = [int(i) for i in counts.index if int(i) not in (0, other_id) and 0 < int(i) < len(names)]
    ranked = sorted(ids, key=lambda i: (-int(counts[i]), i))
    return [(i, names[i]) for i in ranked[:n_top]]


@dataclass
class JudgedPiece:
    composer_id: int
    composer: str
    cfg_scale: float
    seed: int                   # the seed of its batch
    token_ids: list[int]        # BOS first, as generated
    score: Any                  # the decoded symusic Score
    decodable: bool
    path: str                   # the MIDI file, relative to data/judged/
    n_bars: int
    stop_reason: str


@dataclass
class JudgedSet:
    composers: list[tuple[int, str]]
    scales: list[float]
    n_per_composer: int
    pieces: list[JudgedPiece] = field(default_factory=list)

    def by_scale(self) -> dict[float, list[JudgedPiece]]:
        """The pieces of every scale (composers in `composers` order): what per-scale metrics are computed from."""
        return {s: [p for p in self.pieces if p.cfg_scale == s] for s in self.scales}


def generate_judged(cfg, sample, seed: int, model_dir: Path, composers: list[tuple[int, str]], judged_dir: Path,
                    progress: bool = True) -> JudgedSet:
    """Generate the judged set with the model in `model_dir` and write `judged_dir` (MIDI + manifest.json)
    atomically; `cfg` is the evaluate section (n_per_composer, cfg_sweep, device), `sample` the sample section."""
    from tqdm import tqdm

    from mozart.generation.decoder import SamplingSettings
    from mozart.generation.engine import DEFAULT_BPM, decode_piece, load_model_dir, sample_tokens
    from mozart.generation.sample_stage import slug
    from mozart.infra.atomic import atomic_dir, write_json

    lm = load_model_dir(model_dir, cfg.device)  # the model's own precision, as the sample stage decodes
    judged = JudgedSet(composers, guidance_scales(cfg, sample), cfg.n_per_composer)
    rows = [(cid, name, k) for cid, name in composers for k in range(cfg.n_per_composer)]
    chunks = [rows[i:i + sample.batch_size] for i in range(0, len(rows), sample.batch_size)]
    # the sample stage's tempo rule: sample.bpm, else the tokens' own tempo where they carry one, else 120
    bpm = sample.bpm if sample.bpm > 0 else (None if lm.tokenizer.config.use_tempos else DEFAULT_BPM)
    bar = tqdm(total=len(rows) * len(judged.scales), desc="judged pieces", unit="piece",
               disable=None if progress else True)
    with atomic_dir(judged_dir) as tmp:
        for scale in judged.scales:
            settings = SamplingSettings.from_config(sample, cfg_scale=scale)
            for b, chunk in enumerate(chunks):
                gen = sample_tokens(lm, [cid for cid, _, _ in chunk], settings, n_bars=sample.bars, seed=seed + b,
                                    max_new_tokens=sample.max_tokens)
                for row, (cid, name, k) in enumerate(chunk):
                    ids = [int(t) for t in gen.tokens[row]]
                    score, decodable = decode_piece(lm.tokenizer, ids, bpm)
                    path = f"cfg{scale:g}-{cid:02d}-{slug(name)}-{k + 1:02d}.mid"
                    score.dump_midi(str(tmp / path))
                    judged.pieces.append(JudgedPiece(cid, name, scale, seed + b, ids, score, bool(decodable), path,
                                                     int(gen.n_bars[row]), gen.stop_reason[row]))
                bar.update(len(chunk))
        write_json(tmp / "manifest.json", {
            "seed": seed, "bars": sample.bars, "n_per_composer": cfg.n_per_composer, "scales": judged.scales,
            "pieces": [{"composer": p.composer, "composer_id": p.composer_id, "cfg_scale": p.cfg_scale,
                        "seed": p.seed, "path": p.path, "decodable": p.decodable, "n_tokens": len(p.token_ids),
                        "n_bars": p.n_bars, "stop_reason": p.stop_reason, "token_ids": p.token_ids}
                       for p in judged.pieces]})
    bar.close()
    return judged


# ------------------------------------------------------------------------------------------------ the classifier

def _segments(frame, decoded: dict, wanted: dict[int, str], segment_bars: int):
    """Feature rows of up to STYLE_SEGMENTS_PER_PIECE segments of every decoded piece of a wanted composer:
    (features, composer names, the piece index of each row)."""
    from mozart.evaluation import style

    x, y, piece = [], [], []
    for idx, composer_id in zip(frame.index, frame["composer_id"]):
        if int(composer_id) in wanted and decoded.get(idx) is not None:
            for f in style.segment_features(decoded[idx], segment_bars, STYLE_SEGMENTS_PER_PIECE):
                x.append(f)
                y.append(wanted[int(composer_id)])
                piece.append(idx)
    return x, y, piece


def _rate(correct: int, n: int, prefix: str) -> dict:
    low, high = wilson_interval(correct, n)
    return {f"{prefix}accuracy": correct / n if n else math.nan, f"{prefix}ci_low": low, f"{prefix}ci_high": high,
            f"{prefix}n": n}


def fit_style_classifier(composers: list[tuple[int, str]], train, test, decoded: dict, segment_bars: int,
                         seed: int) -> tuple[Any, dict]:
    """The composer classifier over the judged composers, trained on real train segments of `segment_bars` bars,
    and its held-out accuracy on the real test pieces of those composers: (model or None, eval.json's
    "classifier")."""
    from mozart.evaluation import style

    wanted = dict(composers)
    x_train, y_train, _ = _segments(train, decoded, wanted, segment_bars)
    x_test, y_test, test_piece = _segments(test, decoded, wanted, segment_bars)
    summary = {"restricted_to": "the judged composers", "classes": len(set(y_train)), "segment_bars": segment_bars,
               "train_segments": len(y_train), "per_piece_rule": "mean class probability over the piece's segments",
               "reference_per_piece_accuracy_10_composers": KONG_PER_PIECE_ACCURACY}
    if len(set(y_train)) < 2:
        print("warning: fewer than two judged composers have train pieces; style accuracy is not measured",
              file=sys.stderr)
        return None, {**summary, **_rate(0, 0, "segment_"), **_rate(0, 0, "piece_"), "chance": math.nan,
                      "majority_composer": "", "segment_majority_rate": math.nan, "piece_majority_rate": math.nan}
    model = style.fit_classifier(x_train, y_train, seed)
    labels = np.asarray(y_test)
    correct_segments = int(np.sum(model.predict(np.asarray(x_test)) == labels)) if len(labels) else 0
    owner = {piece: k for k, piece in enumerate(dict.fromkeys(test_piece))}  # test piece -> its number
    piece_labels = [""] * len(owner)
    for piece, label in zip(test_piece, y_test):
        piece_labels[owner[piece]] = label
    correct_pieces = 0
    if owner:
        proba = model.predict_proba(np.asarray(x_test))
        rows_of = np.asarray([owner[p] for p in test_piece])
        named = model.classes_[[int(np.argmax(proba[rows_of == k].mean(axis=0))) for k in range(len(owner))]]
        correct_pieces = int(np.sum(named == np.asarray(piece_labels)))
    classes, counts = np.unique(y_train, return_counts=True)
    levels = style.chance_levels(y_train, y_test)
    return model, {**summary, **_rate(correct_segments, len(labels), "segment_"),
                   **_rate(correct_pieces, len(owner), "piece_"), "chance": levels["chance"],
                   "majority_composer": str(classes[np.argmax(counts)]),
                   "segment_majority_rate": levels["majority_rate"],
                   "piece_majority_rate": style.chance_levels(y_train, piece_labels)["majority_rate"]}


def style_hits(model, pieces: list[JudgedPiece], segment_bars: int) -> list[bool]:
    """Whether the classifier names each piece's composer (a piece without notes is a miss)."""
    from mozart.evaluation import style

    feats = [style.segment_features(p.score, segment_bars, 1)[:1] for p in pieces]
    have = [i for i, f in enumerate(feats) if f]
    hits = [False] * len(pieces)
    if have:
        named = model.predict(np.asarray([feats[i][0] for i in have]))
        for i, name in zip(have, named):
            hits[i] = str(name) == pieces[i].composer
    return hits


# ---------------------------------------------------------------------------------------------------- the report

@dataclass
class JudgedReport:
    section: dict               # eval.json's "judged"
    flat: dict                  # eval.json's top-level style keys (the default scale and no guidance)
    style_by_key: dict          # {(composer_id, guided): accuracy} for metrics/eval_composers.tsv
    tsv: str                    # metrics/eval_judged.tsv


def _mean(values) -> float:
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def scale_metrics(cfg, pieces: list[JudgedPiece], hits: list[bool] | None, real: dict[str, float]) -> dict:
    """One scale's section: style accuracy with its interval, decodability, H1/H4/GS and their gaps to `real`."""
    from mozart.evaluation.metrics import piece_metrics

    rows = [piece_metrics(p.score, cfg.grid, cfg.use_time_signatures) for p in pieces]
    out = {"n": len(pieces), "correct": sum(hits) if hits is not None else 0}
    rate = _rate(out["correct"], len(pieces) if hits is not None else 0, "style_")
    out.update({"style_accuracy": rate["style_accuracy"], "style_ci_low": rate["style_ci_low"],
                "style_ci_high": rate["style_ci_high"],
                "decodable_fraction": _mean([p.decodable for p in pieces])})
    for key in GAP_KEYS:
        out[key] = _mean([r[key] for r in rows])
        out[f"gap_{key}"] = abs(out[key] - real[key])
        out[f"gap_{key}_rel"] = out[f"gap_{key}"] / real[key] if real[key] else math.nan
    return out


def tsv_cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def judge(cfg, sample, judged: JudgedSet, train, test, decoded: dict, real_rows: list[dict],
          seed: int) -> JudgedReport:
    """Judge every scale of `judged` against the real pieces: `train` / `test` are metadata rows (their decoded
    scores in `decoded`, by index) for the classifier, `real_rows` the real test pieces' metrics for the gaps."""
    model, classifier = fit_style_classifier(judged.composers, train, test, decoded, sample.bars, seed)
    real = {k: _mean([r.get(k) for r in real_rows]) for k in GAP_KEYS}
    by_scale = judged.by_scale()
    first = next(iter(by_scale.values()), [])  # every scale has the same composers
    majority = (_mean([p.composer == classifier["majority_composer"] for p in first])
                if model is not None else math.nan)  # the rate of always naming the biggest train composer
    section: dict[str, Any] = {"composers": ", ".join(name for _, name in judged.composers),
                               "n_per_composer": judged.n_per_composer, "classifier": classifier,
                               "chance": classifier["chance"], "majority_rate": majority}
    lines = ["\t".join(("composer", "cfg_scale", "n", "correct", "accuracy", "ci_low", "ci_high"))]
    style_by_key: dict[tuple[int, bool], float] = {}
    for scale, pieces in by_scale.items():
        hits = style_hits(model, pieces, sample.bars) if model is not None else None
        section[scale_key(scale)] = {"cfg_scale": scale, **scale_metrics(cfg, pieces, hits, real)}
        for cid, name in judged.composers:
            mine = [h for p, h in zip(pieces, hits or [False] * len(pieces)) if p.composer_id == cid]
            rate = _rate(sum(mine), len(mine) if hits is not None else 0, "")
            lines.append("\t".join(tsv_cell(v) for v in (name, float(scale), len(mine), sum(mine), rate["accuracy"],
                                                         rate["ci_low"], rate["ci_high"])))
            for guided, at in ((True, float(sample.cfg_scale)), (False, 1.0)):
                if scale == at:
                    style_by_key[(cid, guided)] = rate["accuracy"]
    return JudgedReport(section, flat_keys(section, float(sample.cfg_scale)), style_by_key, "\n".join(lines) + "\n")


def flat_keys(section: dict, default_scale: float) -> dict:
    """The top-level eval.json keys `dvc metrics diff` shows: the default scale (`_cfg`) and no guidance
    (`_nocfg`), the classifier's held-out accuracy and its baselines."""
    classifier = section["classifier"]
    out = {"style_chance": section["chance"], "style_majority_rate": section["majority_rate"],
           "style_classes": classifier["classes"], "style_train_segments": classifier["train_segments"],
           "style_test_segments": classifier["segment_n"],
           "real_test_style_accuracy": classifier["segment_accuracy"],
           "real_test_style_accuracy_piece": classifier["piece_accuracy"]}
    for suffix, scale in (("cfg", default_scale), ("nocfg", 1.0)):
        at = section[scale_key(scale)]
        out.update({f"style_accuracy_{suffix}": at["style_accuracy"],
                    f"style_accuracy_{suffix}_ci_low": at["style_ci_low"],
                    f"style_accuracy_{suffix}_ci_high": at["style_ci_high"], f"n_style_{suffix}": at["n"]})
    return out
