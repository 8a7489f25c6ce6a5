"""Typed configuration: one dataclass per `params.yaml` section.

Config flows one way: params.yaml -> stage script -> these dataclasses -> library functions. The library never reads
YAML. Every check on a value lives here: `build()` rejects unknown keys and wrong types, each dataclass checks its
ranges when it is made (RULES: so a library caller gets the same checks as params.yaml), and `validate_params` adds
the checks that span sections (CROSS_RULES). A bad params.yaml thus fails before any data is read, in one line naming
the key, the value and what is allowed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mozart.errors import ConfigError


class _Checked:
    """Mixin: a config dataclass checks its values against RULES when it is constructed."""
    SECTION = ""

    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True)
class OrganizeConfig(_Checked):
    source: str = "data/music21"
    layout: str = "auto"
    min_works_per_composer: int = 5
    max_works_per_composer: int = 40
    timeout_s: float = 60.0
    n_jobs: int = -1
    aliases: str = ""  # optional CSV/YAML of label -> composer that overrides the composer list ("" = none)


@dataclass(frozen=True)
class TokenizeConfig(_Checked):
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
class PrepareConfig(_Checked):
    min_pieces: int = 5
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass(frozen=True)
class ModelConfig(_Checked):
    """Architecture: the params.yaml `model` section. `mozart.model.gpt.GPTConfig` extends it with what the data
    decides (vocab_size, n_composers, special ids); that is what every model directory's `config.json` holds."""
    n_layer: int = 8
    d_model: int = 512
    n_head: int = 8
    d_ff: int = 2048
    context: int = 8192
    dropout: float = 0.1
    positions: str = "rope"      # rope (rotary q/k, mozart.model.rope) | learned (the seed's absolute embedding)
    rope_base: float = 10000.0   # RoPE frequency base


@dataclass(frozen=True)
class TrainConfig(_Checked):
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
    init_from: str = ""  # "" = from scratch; else a trained model directory to fine-tune (mozart.training.finetune)


@dataclass(frozen=True)
class TrainStageConfig:
    """The train stage's config: it reads two params.yaml sections, `model` and `train`."""
    model: ModelConfig
    train: TrainConfig

    def __post_init__(self) -> None:
        check_across({"model": self.model, "train": self.train})


@dataclass(frozen=True)
class SampleConfig(_Checked):
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
    cfg_scale: float = 3.0          # from the quality ladder's guidance sweep (QUALITY.md)
    bpm: float = 0.0
    batch_size: int = 8
    max_tokens: int = 16384
    device: str = "auto"
    end: bool = True                # close each piece at its length (a final chord + EOS) instead of cutting it
    attention_sinks: int = 4        # RoPE models past the context: leading positions the rolling KV cache keeps


@dataclass(frozen=True)
class EvaluateConfig(_Checked):
    grid: int = 64
    use_time_signatures: bool = False
    max_real_pieces: int = 50
    nll_batches: int = 20
    device: str = "auto"
    n_top_composers: int = 6        # style accuracy over the pieces of these largest composers
    n_per_composer: int = 16        # free pieces generated per composer, with and without CFG
    cfg_sweep: list[float] = field(default_factory=list)  # extra guidance scales to judge ([] = sample.cfg_scale, 1)
    structure: bool = True          # structureness SI (renders audio with render.soundfont)


@dataclass(frozen=True)
class RenderConfig(_Checked):
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

# Values a key may take (checked with RULES below).
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("organize", "layout"): ("auto", "folder", "giantmidi", "prefix", "csv"),
    ("tokenize", "method"): ("REMI", "REMIPlus", "MIDILike"),
    ("train", "device"): ("auto", "cpu", "cuda", "mps"),
    ("train", "resume"): ("auto", "never"),
    ("train", "grad_checkpointing"): ("auto", True, False),
    ("model", "positions"): ("rope", "learned"),
    ("sample", "device"): ("auto", "cpu", "cuda", "mps"),
    ("evaluate", "device"): ("auto", "cpu", "cuda", "mps"),
}


# --------------------------------------------------------------------------------------------------- value ranges

def _between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    ok = lambda v: (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)  # noqa: E731
    return ok, f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


_WORKERS = (lambda v: v != 0, "a worker count, or negative for all cores but that many minus one (-1 = all); not 0")
_POSITIVE_S = _between(0, 86_400, lo_open=True)
_NONEMPTY = (lambda v: bool(v.strip()), "a non-empty string")
_MIDI = _between(0, 127)

# (section, key) -> (predicate, what is allowed). Upper bounds catch values that would not fit in memory or time.
RULES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("organize", "source"): (lambda v: bool(v.strip()) and v != "music21",
                             'a folder path (the embedded corpus is "data/music21", no longer "music21"; not empty: '
                             'that would be the repository itself)'),
    ("organize", "min_works_per_composer"): _between(1, 1e6),
    ("organize", "max_works_per_composer"): (lambda v: v >= 0, ">= 0 (0 = all)"),
    ("organize", "timeout_s"): _POSITIVE_S,
    ("organize", "n_jobs"): _WORKERS,
    ("tokenize", "pitch_min"): _MIDI,
    ("tokenize", "pitch_max"): _MIDI,
    ("tokenize", "positions_per_beat"): _between(1, 96),
    ("tokenize", "num_velocities"): _between(1, 127),
    ("tokenize", "transpose"): (lambda v: all(-24 <= s <= 24 for s in v), "a list of semitone shifts in [-24, 24]"),
    ("tokenize", "n_jobs"): _WORKERS,
    ("tokenize", "rows_per_shard"): _between(1, 1_000_000),
    ("tokenize", "timeout_s"): _POSITIVE_S,
    ("prepare", "min_pieces"): _between(1, 1e9),
    ("prepare", "val_fraction"): _between(0, 1, hi_open=True),
    ("prepare", "test_fraction"): _between(0, 1, hi_open=True),
    ("model", "n_layer"): _between(1, 1024),
    ("model", "d_model"): _between(1, 65_536),
    ("model", "n_head"): _between(1, 1024),
    ("model", "d_ff"): _between(1, 262_144),
    ("model", "context"): _between(2, 1_048_576),
    ("model", "dropout"): _between(0, 1, hi_open=True),
    ("model", "rope_base"): _between(1, 1e9, lo_open=True),
    ("train", "seq_len"): _between(1, 1_048_576),
    ("train", "batch_size"): _between(1, 65_536),
    ("train", "grad_accum"): _between(1, 65_536),
    ("train", "max_steps"): _between(1, 1e10),
    ("train", "lr"): _between(0, 1, lo_open=True),
    ("train", "weight_decay"): _between(0, 10),
    ("train", "warmup_frac"): _between(0, 1, hi_open=True),
    ("train", "grad_clip"): (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    ("train", "label_smoothing"): _between(0, 1, hi_open=True),
    ("train", "p_uncond"): _between(0, 1),
    ("train", "eval_every"): _between(1, 1e10),
    ("train", "eval_batches"): _between(1, 10_000),
    ("train", "ckpt_every"): _between(1, 1e10),
    ("train", "num_workers"): (lambda v: 0 <= v <= 64, "0 (crops cut in the training loop) or a thread count in "
                                                        "[1, 64] (a background thread cuts the next step's crops)"),
    ("train", "max_minutes"): (lambda v: v >= 0, ">= 0 (0 = no limit)"),
    ("train", "threads"): _between(0, 4096),
    ("sample", "composers"): (lambda v: all(s.strip() for s in v), "a list of composer names (none empty)"),
    ("sample", "n_top_composers"): _between(0, 10_000),
    ("sample", "n_per_composer"): _between(0, 10_000),
    ("sample", "bars"): _between(1, 100_000),
    ("sample", "n_prompts"): _between(0, 10_000),
    ("sample", "prompt_bars"): _between(1, 100_000),
    ("sample", "continuation_bars"): _between(2, 100_000),
    ("sample", "temperature"): _between(0, 100),
    ("sample", "top_k"): (lambda v: v >= 0, ">= 0 (0 = off)"),
    ("sample", "top_p"): _between(0, 1, lo_open=True),
    ("sample", "repetition_penalty"): _between(0, 100, lo_open=True),
    ("sample", "repetition_window"): _between(1, 1_048_576),
    ("sample", "cfg_scale"): _between(0, 100),
    ("sample", "bpm"): (lambda v: v == 0 or 10 <= v <= 400, "0 (the prompt's tempo, else 120) or in [10, 400]"),
    ("sample", "batch_size"): _between(1, 4096),
    ("sample", "max_tokens"): _between(1, 10_000_000),
    ("sample", "attention_sinks"): _between(0, 1024),
    ("evaluate", "grid"): _between(1, 1024),
    ("evaluate", "max_real_pieces"): _between(0, 1_000_000),
    ("evaluate", "nll_batches"): _between(1, 100_000),
    ("evaluate", "n_top_composers"): _between(2, 10_000),
    ("evaluate", "n_per_composer"): _between(1, 10_000),
    ("evaluate", "cfg_sweep"): (lambda v: all(0 <= s <= 100 for s in v), "a list of guidance scales in [0, 100]"),
    ("render", "soundfont"): _NONEMPTY,
    ("render", "sample_rate"): _between(8_000, 192_000),
}


def _fail(where: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{where} = {value!r} is not allowed: must be {allowed}")


def check_section(cfg: Any) -> None:
    """Check every field of a config dataclass: finite numbers, RULES ranges, CHOICES."""
    section = next(name for name, cls in SECTIONS.items() if isinstance(cfg, cls))
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{section}.{f.name}"
        numbers = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise _fail(where, value, "a finite number")
        choices = CHOICES.get((section, f.name))
        if choices and value not in choices:
            raise _fail(where, value, f"one of {', '.join(map(str, choices))}")
        rule = RULES.get((section, f.name))
        if rule and not rule[0](value):
            raise _fail(where, value, rule[1])
    check_across({section: cfg})


# Checks that span keys or sections: (sections needed, predicate over those configs, message).
CROSS_RULES: list[tuple[tuple[str, ...], Callable[..., bool], Callable[..., str]]] = [
    (("model",), lambda m: m.d_model % m.n_head == 0,
     lambda m: f"model.d_model ({m.d_model}) must be divisible by model.n_head ({m.n_head})"),
    (("model",), lambda m: m.positions != "rope" or (m.d_model // m.n_head) % 2 == 0,
     lambda m: f"model.positions = rope needs an even head size: model.d_model / model.n_head = "
               f"{m.d_model} / {m.n_head} is odd"),
    (("model", "train"), lambda m, t: t.seq_len <= m.context,
     lambda m, t: f"train.seq_len ({t.seq_len}) must be <= model.context ({m.context}): lower train.seq_len or "
                  "raise model.context"),
    (("model", "train"), lambda m, t: t.batch_size * t.seq_len * m.d_model <= 2**34,
     lambda m, t: f"train.batch_size x train.seq_len x model.d_model ({t.batch_size} x {t.seq_len} x {m.d_model}) "
                  "would not fit in memory: one activation alone would exceed 64 GiB; lower train.batch_size"),
    (("tokenize",), lambda t: t.pitch_min < t.pitch_max,
     lambda t: f"tokenize.pitch_min ({t.pitch_min}) must be below tokenize.pitch_max ({t.pitch_max})"),
    (("prepare",), lambda p: p.val_fraction + p.test_fraction < 1,
     lambda p: f"prepare.val_fraction + prepare.test_fraction ({p.val_fraction} + {p.test_fraction}) must be < 1: "
               "the train split needs pieces"),
    (("sample",), lambda s: s.continuation_bars > s.prompt_bars,
     lambda s: f"sample.continuation_bars ({s.continuation_bars}) must be more than sample.prompt_bars "
               f"({s.prompt_bars}): the length counts the prompt's bars too"),
]


def check_across(configs: Mapping[str, Any]) -> None:
    """Run every CROSS_RULES entry whose sections are all in `configs` (section name -> config dataclass)."""
    for sections, ok, message in CROSS_RULES:
        if all(s in configs for s in sections):
            args = [configs[s] for s in sections]
            if not ok(*args):
                raise ConfigError(message(*args))


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
    """Build the dataclass for `section` from a plain mapping: unknown keys, wrong types and values out of range
    (RULES, CHOICES) each fail with one line that starts `params.yaml:` and names the key."""
    if section not in SECTIONS:
        raise ConfigError(f"params.yaml: unknown section {section!r}{_closest(section, list(SECTIONS))}; "
                          f"valid sections: {', '.join(SECTIONS)}")
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ConfigError(f"params.yaml: {section} must be a mapping of keys (key: value lines), "
                          f"got a {type(mapping).__name__}: {mapping!r}"[:300])
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in (mapping or {}).items():
        if key not in valid:
            raise ConfigError(f"params.yaml: unknown key {section}.{key}{_closest(str(key), valid)}; "
                              f"valid keys: {', '.join(valid)}")
        kwargs[key] = _coerce(section, key, value, hints[key])
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"params.yaml: {exc}") from None


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a whole params.yaml mapping (top-level keys, `seed`, every section, CROSS_RULES) and return the
    config of every section (defaults where a section is absent)."""
    if not isinstance(params, Mapping):
        raise ConfigError("params.yaml must be a mapping of sections")
    for key in params:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"params.yaml: unknown top-level key {key!r}{_closest(str(key), sorted(TOP_LEVEL_KEYS))}; "
                              f"valid keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"params.yaml: seed = {seed!r} is not allowed: must be an integer in [0, 2^32)")
    configs = {section: build(section, params.get(section)) for section in SECTIONS}
    try:
        check_across(configs)
    except ConfigError as exc:
        raise ConfigError(f"params.yaml: {exc}") from None
    return configs
