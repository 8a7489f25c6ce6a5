"""Typed configuration: one dataclass per `params.yaml` section.

Config flows one way: params.yaml -> stage script -> these dataclasses -> library functions. The library never reads
YAML; `build()` validates a plain mapping (unknown keys, wrong types) before any work starts, so a typo in
params.yaml fails in the first second with a message naming the key and the valid ones.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mozart.errors import ConfigError


@dataclass(frozen=True)
class OrganizeConfig:
    source: str = "music21"
    layout: str = "auto"
    min_works_per_composer: int = 5
    max_works_per_composer: int = 40
    timeout_s: float = 60.0
    n_jobs: int = -1


@dataclass(frozen=True)
class TokenizeConfig:
    method: str = "REMI"
    pitch_min: int = 21
    pitch_max: int = 108
    positions_per_beat: int = 8
    num_velocities: int = 32
    use_time_signatures: bool = False
    use_tempos: bool = False
    transpose: list[int] = field(default_factory=list)
    n_jobs: int = -1
    rows_per_shard: int = 512
    timeout_s: float = 60.0


@dataclass(frozen=True)
class PrepareConfig:
    min_pieces: int = 5
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Also saved as `config.json` inside every model directory (with vocab_size, n_composers)."""
    n_layer: int = 8
    d_model: int = 512
    n_head: int = 8
    d_ff: int = 2048
    context: int = 8192
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 8192
    batch_size: int = 2
    grad_accum: int = 8
    max_steps: int = 20000
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    p_uncond: float = 0.1
    amp: bool = True
    grad_checkpointing: bool | str = "auto"  # auto | true | false (mozart.training.gpu_settings)
    compile: bool = False
    device: str = "auto"
    eval_every: int = 500
    eval_batches: int = 20
    ckpt_every: int = 500
    resume: str = "auto"
    num_workers: int = 2
    max_minutes: float = 0.0
    threads: int = 0


@dataclass(frozen=True)
class SampleConfig:
    composers: list[str] = field(default_factory=list)
    n_top_composers: int = 4
    n_per_composer: int = 2
    bars: int = 16
    n_prompts: int = 2
    prompt_bars: int = 8
    continuation_bars: int = 32
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    repetition_window: int = 64
    cfg_scale: float = 1.5
    bpm: float = 0.0
    batch_size: int = 8
    max_tokens: int = 16384
    device: str = "auto"


@dataclass(frozen=True)
class EvaluateConfig:
    grid: int = 64
    use_time_signatures: bool = False
    max_real_pieces: int = 50
    nll_batches: int = 20
    device: str = "auto"


@dataclass(frozen=True)
class RenderConfig:
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    sample_rate: int = 44100


SECTIONS: dict[str, type] = {
    "organize": OrganizeConfig,
    "tokenize": TokenizeConfig,
    "prepare": PrepareConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "evaluate": EvaluateConfig,
    "render": RenderConfig,
}
TOP_LEVEL_KEYS = {"seed", *SECTIONS}

# Values a key may take, checked by `build` (membership) so a typo fails early.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("organize", "layout"): ("auto", "folder", "giantmidi", "prefix", "csv"),
    ("tokenize", "method"): ("REMI", "REMIPlus", "MIDILike"),
    ("train", "device"): ("auto", "cpu", "cuda", "mps"),
    ("train", "resume"): ("auto", "never"),
    ("train", "grad_checkpointing"): ("auto", True, False),
    ("sample", "device"): ("auto", "cpu", "cuda", "mps"),
    ("evaluate", "device"): ("auto", "cpu", "cuda", "mps"),
}


def _closest(name: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _coerce(section: str, key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotated type; ints are accepted where floats are expected."""
    where = f"params.yaml: {section}.{key}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # e.g. bool | str: the first member the value fits
        for member in typing.get_args(tp):
            with contextlib.suppress(ConfigError):
                return _coerce(section, key, value, member)
        raise ConfigError(f"{where} must be {' or '.join(t.__name__ for t in typing.get_args(tp))}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__} {value!r}")
        return [_coerce(section, key, v, item_tp) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {where}")  # programming error, not user input


def build(section: str, mapping: Mapping[str, Any] | None) -> Any:
    """Build the dataclass for `section` from a plain mapping, rejecting unknown keys and wrong types."""
    if section not in SECTIONS:
        raise ConfigError(f"params.yaml: unknown section {section!r}{_closest(section, list(SECTIONS))}; "
                          f"valid sections: {', '.join(SECTIONS)}")
    cls = SECTIONS[section]
    mapping = dict(mapping or {})
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in mapping.items():
        if key not in hints:
            raise ConfigError(f"params.yaml: unknown key {section}.{key}{_closest(key, valid)}; "
                              f"valid keys: {', '.join(valid)}")
        kwargs[key] = _coerce(section, key, value, hints[key])
        choices = CHOICES.get((section, key))
        if choices and kwargs[key] not in choices:
            raise ConfigError(f"params.yaml: {section}.{key} = {value!r} is not one of {', '.join(map(str, choices))}")
    return cls(**kwargs)


def validate_params(params: Mapping[str, Any]) -> None:
    """Validate a whole params.yaml mapping: top-level keys, every section, and `seed`."""
    if not isinstance(params, Mapping):
        raise ConfigError("params.yaml must be a mapping of sections")
    for key in params:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"params.yaml: unknown top-level key {key!r}{_closest(key, sorted(TOP_LEVEL_KEYS))}; "
                              f"valid keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"params.yaml: seed must be an integer, got {seed!r}")
    for section in SECTIONS:
        if section in params:
            build(section, params[section])


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def resolve_source(source: str, repo_root: Path) -> str | Path:
    """`organize.source`: the literal "music21", or a folder path relative to the repository root."""
    if source == "music21":
        return source
    p = Path(source).expanduser()
    return p if p.is_absolute() else (repo_root / p).resolve()
