"""Where each stage reads and writes: one frozen dataclass per stage, mirroring that stage's deps and outs in dvc.yaml.

Every stage script builds its config and `<Stage>Paths.under(repo_root)`, then calls the library's
`run(cfg, seed, paths) -> metrics`. Tests build the same objects over a temporary folder. Field names say what a path
holds (`*_dir` is a folder, `*_json` / `*_tsv` a file); each field's `at(...)` is its place under the repository.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def at(relative: str) -> Any:
    """A path field and where it lies under the repository root ("." = the root itself)."""
    return field(metadata={"at": relative})


class _UnderRoot:
    @classmethod
    def under(cls, root: str | Path):
        """Every path of the stage under the repository (or test) folder `root`."""
        return cls(**{f.name: Path(root) / f.metadata["at"] for f in dataclasses.fields(cls)})


def resolve_source(source: str, repo_root: Path) -> Path:
    """`organize.source` (or `train.init_from`): a folder path, absolute or relative to the repository root (the
    default source `data/music21` is the embedded corpus, written by the music21 stage)."""
    p = Path(source).expanduser()
    return p if p.is_absolute() else (repo_root / p).resolve()

@dataclass(frozen=True)
class Music21Paths(_UnderRoot):
    repo_dir: Path = at(".")                # the export runs only when organize.source is data/music21
    export_dir: Path = at("data/music21")   # out (MIDI files + works.json)


@dataclass(frozen=True)
class OrganizePaths(_UnderRoot):
    repo_dir: Path = at(".")                # organize.source is resolved against it when relative
    organized_dir: Path = at("data/organized")  # out (<Composer>/*.mid, manifest.parquet)


@dataclass(frozen=True)
class TokenizePaths(_UnderRoot):
    organized_dir: Path = at("data/organized")
    tokens_dir: Path = at("data/tokens")    # out (tokenizer.json, shard-*.parquet, manifest.parquet)


@dataclass(frozen=True)
class PreparePaths(_UnderRoot):
    organized_dir: Path = at("data/organized")  # reads only its manifest.parquet
    tokens_dir: Path = at("data/tokens")
    prepared_dir: Path = at("data/prepared")  # out (composers.json, metadata.parquet)
    data_json: Path = at("metrics/data.json")  # metrics


@dataclass(frozen=True)
class TrainPaths(_UnderRoot):
    repo_dir: Path = at(".")                # train.init_from is resolved against it when relative
    base_dir: Path = at("models/base")      # the base model dvc.yaml tracks for fine-tuning (README placeholder)
    tokens_dir: Path = at("data/tokens")
    prepared_dir: Path = at("data/prepared")
    final_dir: Path = at("models/final")  # out
    checkpoint_dir: Path = at("models/checkpoints")  # not a DVC out: kept across runs for resuming
    metrics_json: Path = at("metrics/train.json")  # metrics
    curve_tsv: Path = at("metrics/train_curve.tsv")  # plots


@dataclass(frozen=True)
class SamplePaths(_UnderRoot):
    model_dir: Path = at("models/final")
    prepared_dir: Path = at("data/prepared")
    tokens_dir: Path = at("data/tokens")
    samples_dir: Path = at("data/samples")  # out (MIDI, manifest.json)
    metrics_json: Path = at("metrics/sample.json")  # metrics


@dataclass(frozen=True)
class EvaluatePaths(_UnderRoot):
    model_dir: Path = at("models/final")
    samples_dir: Path = at("data/samples")
    prepared_dir: Path = at("data/prepared")
    tokens_dir: Path = at("data/tokens")
    judged_dir: Path = at("data/judged")    # out (the judged set: MIDI, manifest.json)
    metrics_json: Path = at("metrics/eval.json")  # metrics
    composers_tsv: Path = at("metrics/eval_composers.tsv")  # plots
    copies_tsv: Path = at("metrics/eval_copies.tsv")  # out: each free sample's longest run copied from the train split
    judged_tsv: Path = at("metrics/eval_judged.tsv")  # plots (style accuracy per composer and guidance scale)


@dataclass(frozen=True)
class RenderPaths(_UnderRoot):
    samples_dir: Path = at("data/samples")
    metrics_dir: Path = at("metrics")       # reads sample.json, train.json, eval.json, eval_*.tsv
    reports_dir: Path = at("reports")       # out (index.html, audio/, rolls/)
