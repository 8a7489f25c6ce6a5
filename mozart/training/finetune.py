"""Fine-tuning (`train.init_from`): the initial weights of a run that starts from a trained model directory.

The rules, checked before any training step, each failure one `DataError` line:

- the tokenizer must be the base model's: the new data's `data/tokens/tokenizer.json` and the base's
  `tokenizer.json` must name the same miditok tokenization with the same config (the library versions recorded
  beside them may differ), and the vocabulary the data was prepared with must have the base's size and PAD/BOS/EOS
  ids (a token id means the same thing in both, or the base's embeddings mean nothing);
- the architecture is the base's, and params.yaml must say so: every `model.*` key except `dropout` (a training
  setting, which a small fine-tuning corpus may want higher) must equal the base's `config.json`. Taking the base's
  values silently instead would leave params.yaml, dvc.lock and MLflow recording a model that was never trained;
- composers are matched by name between the base's `composers.json` and the new data's: a composer the base knows
  keeps its embedding row, a new one starts from the mean of the base's composer rows (every row but 0), row 0 (the
  unconditional path, zeros) stays. OTHER (the shared id of composers too rare for an id of their own) keeps the
  base's OTHER row when the base has one: it means "a composer with too few pieces" in both, though not the same
  composers. Composers the base knows but the new data lacks are dropped: the saved model's composers.json is the
  new data's (put their pieces in the new corpus to keep them).

Every other tensor is copied; the optimizer, schedule and step count start fresh. The run's resume key includes a
fingerprint of the base (`BaseModel.fingerprint`), so a changed base never resumes another base's checkpoints.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mozart.config import ModelConfig
from mozart.errors import DataError
from mozart.model.directory import (COMPOSERS_FILE, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_composers,
                                    read_json_object, read_model_config, read_weights)
from mozart.paths import resolve_source

# model.* keys that may differ from the base: they change no weight's shape or meaning
FREE_MODEL_KEYS = ("dropout",)
# tokenizer.json keys that record library versions, not the vocabulary
VERSION_KEYS = ("miditok_version", "symusic_version", "hf_tokenizers_version")
SPECIAL_IDS = ("pad_id", "bos_id", "eos_id")


@dataclass(frozen=True)
class BaseModel:
    """A checked base model directory: its config, weights and composers, and a fingerprint of them."""
    directory: Path
    config: Any  # GPTConfig
    weights: dict[str, torch.Tensor]
    composers: dict[str, Any]
    fingerprint: str


def resolve_base_dir(init_from: str, repo_dir: Path) -> Path | None:
    """`train.init_from` as a folder (relative to the repository root, or absolute); None = train from scratch."""
    return resolve_source(init_from, Path(repo_dir)) if init_from else None


def open_base(base_dir: Path, model_cfg: ModelConfig, data_tokenizer: Path) -> BaseModel:
    """Check the base model against this run's params and data tokenizer, then read it (before the data is)."""
    base_dir = Path(base_dir)
    if not (base_dir / CONFIG_FILE).is_file():
        raise DataError(f"train.init_from: {base_dir} holds no trained model ({CONFIG_FILE} is missing): copy the "
                        f"models/final folder of the pretraining run there ({CONFIG_FILE}, {WEIGHTS_FILE}, "
                        f"{TOKENIZER_FILE}, {COMPOSERS_FILE}), or set train.init_from: '' to train from scratch (`dvc exp "
                        "run --temp` / `--queue` copy only what git tracks: fine-tune in the workspace)")
    config = read_model_config(base_dir)
    check_architecture(model_cfg, config, base_dir / CONFIG_FILE)
    check_same_tokenizer(Path(data_tokenizer), base_dir / TOKENIZER_FILE)
    composers = read_composers(base_dir)
    weights = read_weights(base_dir, config)
    return BaseModel(base_dir, config, weights, composers, fingerprint(base_dir))


def check_architecture(model_cfg: ModelConfig, base_config: Any, config_path: Path) -> None:
    """Every model.* key but FREE_MODEL_KEYS must equal the base's config.json: one line naming each that differs."""
    ours = dataclasses.asdict(model_cfg)
    differ = [f"model.{k} is {ours[k]!r} but {getattr(base_config, k)!r} in the base"
              for k in ours if k not in FREE_MODEL_KEYS and ours[k] != getattr(base_config, k)]
    if differ:
        raise DataError(f"train.init_from: {'; '.join(differ)} ({config_path}): fine-tuning keeps the base model's "
                        "architecture, so set these model.* params to the base's values (e.g. `-S model.KEY=VALUE`)")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def tokenizer_differences(data: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """What differs between two tokenizer.json contents, ignoring VERSION_KEYS: 'key: data value vs base value'."""
    found = []
    for key in sorted((set(data) | set(base)) - set(VERSION_KEYS) - {"config"}):
        if data.get(key) != base.get(key):
            found.append(f"{key}: {_short(data.get(key))} vs {_short(base.get(key))}")
    data_cfg, base_cfg = data.get("config") or {}, base.get("config") or {}
    for key in sorted(set(data_cfg) | set(base_cfg)):
        if data_cfg.get(key) != base_cfg.get(key):
            found.append(f"config.{key}: {_short(data_cfg.get(key))} vs {_short(base_cfg.get(key))}")
    return found


def check_same_tokenizer(data_json: Path, base_json: Path) -> None:
    """The new data's tokenizer must be the base's: same tokenization and config (versions aside)."""
    data = read_json_object(data_json, "rerun the tokenize stage: `dvc repro tokenize`")
    differ = tokenizer_differences(data, read_json_object(base_json))
    if differ:
        raise DataError(f"train.init_from: the new data's tokenizer {data_json} differs from the base model's "
                        f"{base_json} ({'; '.join(differ[:4])}{'; ...' if len(differ) > 4 else ''}): tokenize the "
                        "new corpus with the tokenize.* params the base was trained with")


def check_vocabulary(vocab: Any, base: BaseModel, data_tokenizer: Path) -> None:
    """The vocabulary the data was prepared with (size, special ids) must be the base's: the same config read by
    another miditok version could still number tokens differently."""
    ours = {"vocab_size": vocab.size, **{k: getattr(vocab, k) for k in SPECIAL_IDS}}
    differ = [f"{k} {v} vs {getattr(base.config, k)}" for k, v in ours.items() if v != getattr(base.config, k)]
    if differ:
        raise DataError(f"train.init_from: the vocabulary of {data_tokenizer} differs from the base model's "
                        f"{base.directory / CONFIG_FILE} ({'; '.join(differ)}): tokenize the new corpus with the "
                        "tokenize.* params and miditok version the base was trained with")


def fingerprint(base_dir: Path) -> str:
    """sha256 over the files that decide the initial weights (config, weights, composers)."""
    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE, COMPOSERS_FILE):
        h.update(name.encode())
        with open(base_dir / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def composer_sources(base: dict[str, Any], new: dict[str, Any]) -> list[int | None]:
    """For each composer id of the new data: the base's embedding row it starts from, or None (the mean row).
    Id 0 (unconditional) is 0; OTHER is the base's OTHER; every other id is matched by name."""
    base_ids = {name: i for i, name in enumerate(base["names"])
                if i not in (base.get("unconditional_id", 0), base.get("other_id"))}
    sources: list[int | None] = []
    for i, name in enumerate(new["names"]):
        if i == new.get("unconditional_id", 0):
            sources.append(0)
        elif i == new.get("other_id"):
            sources.append(base.get("other_id"))
        else:
            sources.append(base_ids.get(name))
    return sources


def composer_rows(base_rows: torch.Tensor, sources: list[int | None]) -> torch.Tensor:
    """The new composer embedding: row `sources[i]` of the base, or the mean of the base's rows 1.. for None."""
    mean = base_rows[1:].mean(dim=0) if len(base_rows) > 1 else torch.zeros_like(base_rows[0])
    rows = torch.stack([base_rows[s] if s is not None else mean for s in sources])
    rows[0] = 0  # the unconditional path is exactly "no composer" (padding_idx 0)
    return rows


def start_from_base(model: torch.nn.Module, base: BaseModel, new_composers: dict[str, Any]) -> str:
    """Overwrite `model`'s weights with the base's (composer rows mapped as above); returns what was done, in words."""
    sources = composer_sources(base.composers, new_composers)
    weights = dict(base.weights, **{"wce.weight": composer_rows(base.weights["wce.weight"], sources)})
    target = model.state_dict()
    with torch.no_grad():
        for name, tensor in weights.items():
            target[name.removeprefix("module.").removeprefix("_orig_mod.")].copy_(tensor)
    names = new_composers["names"]
    kept = [names[i] for i, s in enumerate(sources) if i > 0 and s is not None]
    new = [names[i] for i, s in enumerate(sources) if s is None]
    other = base.composers.get("other_id")
    dropped = sorted({n for i, n in enumerate(base.composers["names"][1:], 1) if i != other} - set(names))
    return (f"fine-tuning from {base.directory}: {len(kept)} composer(s) keep their embedding rows"
            f"{' (' + ', '.join(kept) + ')' if kept else ''}, {len(new)} new from the mean row"
            f"{' (' + ', '.join(new) + ')' if new else ''}"
            f"{', dropped (not in the new data): ' + ', '.join(dropped) if dropped else ''}")
