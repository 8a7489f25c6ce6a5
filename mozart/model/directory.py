"""The one loader of a model directory: every file is checked before anything runs on it.

A model directory (written by `mozart.model.gpt.save_model`) holds four files, and each is validated in turn:

    config.json         readable JSON object; every architecture field an integer in range (or a dropout in [0, 1));
                        d_model divisible by n_head; pad/bos/eos ids inside the vocabulary
    model.safetensors   a complete safetensors file (a truncated copy is caught from its header, without reading the
                        weights) whose tensor names and shapes are exactly those config.json describes
    tokenizer.json      a miditok tokenizer whose vocabulary size and PAD/BOS/EOS ids are the model's
    composers.json      names (strings), n_pieces, unconditional_id / other_id and composer_to_id, with every composer
                        id a row of the model's composer embedding (config.json n_composers)

Any mismatch is one `DataError` line naming the file and the field. `read_composers` needs no torch (it is what
`mozart composers` uses); `open_model_dir` does the rest. Who calls what: `mozart.generation.engine.load_model_dir`
(`mozart generate`, the sample stage) -> `open_model_dir`; `mozart.model.gpt.load_model` (the evaluate stage,
benchmarks) -> `read_model_config` + `read_weights`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mozart.errors import DataError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
COMPOSERS_FILE = "composers.json"
REQUIRED_SIZES = ("n_layer", "d_model", "n_head", "d_ff", "context", "vocab_size", "n_composers")  # >= 1 each
OPTIONAL_IDS = ("pad_id", "bos_id", "eos_id")  # >= 0 and < vocab_size when present
CORRUPT = "the model directory is corrupt or incomplete: retrain it (`dvc repro train`) or copy it again"


def _bad(path: Path, field: str, problem: str) -> DataError:
    return DataError(f"{path}: {field} {problem} ({CORRUPT})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_json_object(path: Path, remedy: str = CORRUPT) -> dict:
    """A JSON file holding an object; else one DataError line ending in `remedy` (what to do about it)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing ({remedy})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not readable JSON ({type(exc).__name__}: {exc}; {remedy})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} should hold a JSON object, not {type(value).__name__} ({remedy})")
    return value


def require_dir(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"model directory {model_dir} not found: train one with `dvc repro train`, or pass --model "
                        "DIR (a folder with config.json, model.safetensors, tokenizer.json and composers.json)")
    return model_dir


# ------------------------------------------------------------------------------------------------------ config.json

def check_config_fields(raw: dict, path: Path) -> None:
    """The schema of config.json (torch-free): sizes >= 1, dropout in [0, 1), ids inside the vocabulary."""
    for name in REQUIRED_SIZES:
        if name not in raw:
            raise _bad(path, name, "is missing")
        if not _is_int(raw[name]) or raw[name] < 1:
            raise _bad(path, name, f"must be an integer >= 1, got {raw[name]!r}")
    if raw["d_model"] % raw["n_head"]:
        raise _bad(path, "d_model", f"({raw['d_model']}) must be divisible by n_head ({raw['n_head']})")
    for name in OPTIONAL_IDS:
        if name in raw and (not _is_int(raw[name]) or not 0 <= raw[name] < raw["vocab_size"]):
            raise _bad(path, name, f"must be a token id in 0..{raw['vocab_size'] - 1}, got {raw[name]!r}")
    if raw.get("positions", "learned") not in ("rope", "learned"):
        raise _bad(path, "positions", f"must be rope or learned, got {raw['positions']!r}")
    base = raw.get("rope_base", 10000.0)
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not (math.isfinite(base) and base > 1):
        raise _bad(path, "rope_base", f"must be a number > 1, got {base!r}")
    dropout = raw.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not (
            math.isfinite(dropout) and 0 <= dropout < 1):
        raise _bad(path, "dropout", f"must be a number in [0, 1), got {dropout!r}")


def read_model_config(model_dir: str | Path) -> Any:
    """config.json as a GPTConfig, schema checked."""
    from mozart.model.gpt import GPTConfig

    path = Path(model_dir) / CONFIG_FILE
    raw = read_json_object(path)
    check_config_fields(raw, path)
    return GPTConfig.from_dict(raw)


# ------------------------------------------------------------------------------------------------ model.safetensors

def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a MozartGPT built from `config` (on the meta device: no memory, no init cost)."""
    import torch

    from mozart.model.gpt import MozartGPT

    with torch.device("meta"):
        model = MozartGPT(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items() if name != "lm_head.weight"}  # tied


def read_weights(model_dir: str | Path, config: Any) -> dict[str, Any]:
    """The weights of model.safetensors, after checking from its header that the file is complete and that its
    tensor names and shapes are the ones config.json describes."""
    from safetensors import SafetensorError, safe_open

    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing ({CORRUPT})")
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            want = expected_shapes(config)
            _compare_shapes(found, want, path)
            return {name: f.get_tensor(name) for name in found}
    except SafetensorError as exc:  # truncated, empty, or not a safetensors file
        raise DataError(f"{path} is not a complete safetensors file ({exc}; {CORRUPT})") from None


def _compare_shapes(found: dict[str, tuple], want: dict[str, tuple], path: Path) -> None:
    config = path.with_name(CONFIG_FILE)
    found = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in found.items()}
    missing = sorted(set(want) - set(found))
    if missing:
        raise DataError(f"{path}: tensor {missing[0]} is missing ({len(missing)} of {len(want)} tensors that "
                        f"{config} describes are absent; {CORRUPT})")
    unexpected = sorted(set(found) - set(want))
    if unexpected:
        raise DataError(f"{path}: tensor {unexpected[0]} is not part of the model {config} describes ({CORRUPT})")
    for name, shape in want.items():
        if found[name] != shape:
            raise DataError(f"{path}: tensor {name} has shape {list(found[name])} but {config} implies "
                            f"{list(shape)} ({CORRUPT})")


# --------------------------------------------------------------------------------------------------- tokenizer.json

def read_tokenizer(model_dir: str | Path, config: Any) -> Any:
    """The miditok tokenizer of tokenizer.json, checked against the model: vocabulary size and PAD/BOS/EOS ids."""
    from mozart.data.tokenize import load_tokenizer

    path = Path(model_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing ({CORRUPT})")
    read_json_object(path)
    try:
        tokenizer = load_tokenizer(path)
    except DataError as exc:
        raise DataError(f"{exc} ({CORRUPT})") from None
    except Exception as exc:  # noqa: BLE001 - miditok raises many types for a malformed config
        raise DataError(f"{path} is not a miditok tokenizer file ({type(exc).__name__}: {exc}; {CORRUPT})") from None
    config_path = Path(model_dir) / CONFIG_FILE
    if len(tokenizer) != config.vocab_size:
        raise DataError(f"{path}: vocabulary has {len(tokenizer)} tokens but {config_path} vocab_size is "
                        f"{config.vocab_size}: the tokenizer belongs to another model ({CORRUPT})")
    specials = {"pad_id": tokenizer.vocab.get("PAD_None"), "bos_id": tokenizer.vocab.get("BOS_None"),
                "eos_id": tokenizer.vocab.get("EOS_None")}
    for field, token_id in specials.items():
        if token_id != getattr(config, field):
            token = field[:3].upper()
            raise DataError(f"{path}: special token {token} has id {token_id} but {config_path} {field} is "
                            f"{getattr(config, field)}: the tokenizer belongs to another model ({CORRUPT})")
    return tokenizer


# --------------------------------------------------------------------------------------------------- composers.json

def check_composers_fields(composers: dict, path: Path) -> None:
    """The schema of composers.json: names, n_pieces, unconditional_id, other_id and composer_to_id."""
    names = composers.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _bad(path, "names", f"must be a non-empty list of strings, got {names!r:.80}")
    n = len(names)
    counts = composers.get("n_pieces", [0] * n)
    if not isinstance(counts, list) or len(counts) != n or not all(_is_int(c) and c >= 0 for c in counts):
        raise _bad(path, "n_pieces", f"must be a list of {n} piece counts (integers >= 0), got {counts!r:.80}")
    for field, allow_none in (("unconditional_id", False), ("other_id", True)):
        value = composers.get(field, 0 if field == "unconditional_id" else None)
        if not (value is None and allow_none) and not (_is_int(value) and 0 <= value < n):
            raise _bad(path, field, f"must be an id in 0..{n - 1}{' or null' if allow_none else ''}, got {value!r}")
    to_id = composers.get("composer_to_id", {})
    if not isinstance(to_id, dict):
        raise _bad(path, "composer_to_id", f"must be an object (composer name -> id), got {to_id!r:.80}")
    for name, cid in to_id.items():
        if not _is_int(cid) or not 0 <= cid < n:
            raise _bad(path, f"composer_to_id[{name!r}]", f"must be an id in 0..{n - 1}, got {cid!r}")


def read_composers(model_dir: str | Path) -> dict[str, Any]:
    """composers.json, schema checked, and (when config.json is there) every composer id checked against the
    model's composer embedding rows. Torch-free."""
    model_dir = require_dir(model_dir)
    path = model_dir / COMPOSERS_FILE
    composers = read_json_object(path)
    check_composers_fields(composers, path)
    config_path = model_dir / CONFIG_FILE
    if config_path.is_file():
        raw = read_json_object(config_path)
        check_config_fields(raw, config_path)
        if len(composers["names"]) != raw["n_composers"]:
            raise DataError(f"{path}: names lists {len(composers['names'])} composers but {config_path} n_composers "
                            f"(rows of the composer embedding) is {raw['n_composers']} ({CORRUPT})")
    return composers


# --------------------------------------------------------------------------------------------------- all four files

@dataclass
class ModelFiles:
    """A checked model directory: the model (eval mode, on `device`), its tokenizer and composers."""
    model: Any
    tokenizer: Any
    composers: dict[str, Any]


def open_model_dir(model_dir: str | Path, device: Any = "cpu") -> ModelFiles:
    """Check all four files of `model_dir` against each other, then build the model (eval mode) on `device`."""
    from mozart.model.gpt import load_model

    model_dir = require_dir(model_dir)
    composers = read_composers(model_dir)
    tokenizer = read_tokenizer(model_dir, read_model_config(model_dir))
    return ModelFiles(load_model(model_dir, device), tokenizer, composers)
