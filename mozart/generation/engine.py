"""The generation engine: what `mozart generate` and the sample stage share — load a model directory, resolve a
composer, cut a prompt to bars, decode a batch, turn token ids into a MIDI Score.

Length is counted in bars: `--seconds` becomes bars at the output tempo (4 beats per bar). A continuation keeps the
prompt's first `--prompt-bars` bars token for token (the prompt is cut right after the Bar token that opens the next
bar, so the model cannot add notes to the prompt's bars) and continues to `--bars` bars in total.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mozart.config import SampleConfig
from mozart.errors import MozartError

DEFAULT_MODEL_DIR = "models/final"
DEFAULT_BPM = 120.0
BEATS_PER_BAR = 4  # --seconds -> bars assumes 4/4 (the tokenizer's default without TimeSig tokens)
DEFAULTS = SampleConfig()  # one source of truth for sampling defaults: params.yaml's sample section
SMALL_MODEL_PARAMS = 5_000_000  # below this, decode on one CPU thread (measured faster on 2 cores)
UNCONDITIONAL = {"", "none", "any", "unconditional", "<unconditional>"}


# --------------------------------------------------------------------------------------------------- model directory

def read_composers(model_dir: str | Path) -> dict[str, Any]:
    """The model directory's composers.json, checked (mozart.model.directory; no torch needed)."""
    from mozart.model.directory import read_composers as read_checked_composers

    return read_checked_composers(model_dir)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    grammar: Any            # RemiGrammar or None (unsupported tokenizer, or switched off)
    composers: dict[str, Any]
    model_dir: Path
    device: Any
    precision: str = "fp32"   # what the model runs in (mozart.model.quantize), after resolving "auto"

    @property
    def bar_id(self) -> int | None:
        return self.tokenizer.vocab.get("Bar_None")


def load_model_dir(model_dir: str | Path, device: str = "auto", use_grammar: bool = True,
                   precision: str = "fp32") -> LoadedModel:
    """Model (eval mode, on `device`, in `precision`: auto | fp32 | bf16 | int8 | int4), tokenizer, grammar and
    composers (mozart.model.quantize.resolve_precision says what auto is)."""
    from mozart.infra.device import pick_device
    from mozart.generation.grammar import grammar_for_tokenizer
    from mozart.model.directory import open_model_dir
    from mozart.model.quantize import for_inference, resolve_precision

    model_dir = Path(model_dir)
    torch_device = pick_device(device)
    precision = resolve_precision(precision, torch_device)
    files = open_model_dir(model_dir, torch_device)  # all four files checked against each other
    model = for_inference(files.model, precision)
    grammar = grammar_for_tokenizer(files.tokenizer, model.config.vocab_size, enabled=use_grammar)
    return LoadedModel(model, files.tokenizer, grammar, files.composers, model_dir, torch_device, precision)


def known_composers(composers: dict[str, Any]) -> list[str]:
    """Every name a user may ask for: the model's composers and the rare ones folded into OTHER."""
    names = [n for i, n in enumerate(composers["names"]) if i != composers.get("unconditional_id", 0)]
    return list(dict.fromkeys([*names, *composers.get("composer_to_id", {})]))


def resolve_composer(query: str | None, composers: dict[str, Any]) -> tuple[int, str]:
    """(composer_id, display name) for any spelling `mozart.data.names` maps; unknown names list the closest ones."""
    from mozart.data.names import closest_composers, match_composer

    if query is None or query.strip().lower() in UNCONDITIONAL:
        return 0, "unconditional"
    known = known_composers(composers)
    name = match_composer(query, known)
    if name is None:
        near = closest_composers(query, known, 5)
        hint = f"closest known: {', '.join(near)}" if near else f"known: {', '.join(known[:10])}"
        raise MozartError(f"unknown composer {query!r}; {hint} (run `mozart composers` for the full list)")
    if name in composers.get("composer_to_id", {}):
        return int(composers["composer_to_id"][name]), name
    return composers["names"].index(name), name


def is_blend(query: str | None) -> bool:
    """A blend is written `name:weight,name:weight` (e.g. "chopin:0.7,debussy:0.3"); a plain name is not."""
    return query is not None and (":" in query or "," in query)


def resolve_blend(query: str, composers: dict[str, Any]) -> tuple[list[float], str]:
    """(weights over the model's composer ids, display name) for "name:weight,name:weight,...".

    Names take any spelling `resolve_composer` accepts (a part without ":weight" weighs 1; "none" is the zero
    vector, so "chopin:0.5,none:0.5" is Chopin at half strength); weights must be positive numbers and are
    normalised to sum to 1. The model conditions on the weighted sum of the composers' embeddings
    (MozartGPT.composer_vector); a blend of one composer is exactly that composer.
    """
    n_ids = len(composers["names"])
    weights = [0.0] * n_ids
    labels: dict[str, float] = {}
    for part in (p.strip() for p in query.split(",")):
        if not part:
            continue
        name, sep, weight_text = part.rpartition(":") if ":" in part else (part, "", "1")
        try:
            weight = float(weight_text)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise MozartError(f"composer blend {query!r}: the weight of {name.strip() or part!r} must be a positive "
                              f"number, got {weight_text.strip()!r} (write e.g. \"chopin:0.7,debussy:0.3\")")
        composer_id, label = resolve_composer(name, composers)
        weights[composer_id] += weight
        labels[label] = labels.get(label, 0.0) + weight
    total = sum(weights)
    if total <= 0:
        raise MozartError(f"composer blend {query!r} names no composer: write e.g. \"chopin:0.7,debussy:0.3\"")
    display = " + ".join(f"{label} {w / total:.0%}" for label, w in labels.items())
    return [w / total for w in weights], display


def resolve_conditioning(query: str | None, composers: dict[str, Any]) -> tuple[int | list[float], str]:
    """A composer id (plain name, or none) or blend weights (`resolve_blend`), with a display name."""
    return resolve_blend(query, composers) if is_blend(query) else resolve_composer(query, composers)


def is_conditioned(conditioning: int | Sequence[float]) -> bool:
    """True unless the conditioning is the unconditional composer (id 0, or all weight on it)."""
    if isinstance(conditioning, int):
        return conditioning != 0
    return any(w > 0 for w in list(conditioning)[1:])


# ------------------------------------------------------------------------------------------------- prompts and length

def cut_to_bars(ids: Sequence[int], bar_id: int, n_bars: int) -> list[int]:
    """The first `n_bars` bars of `ids`, closed by the Bar token that opens the next bar (appended if absent)."""
    bar_at = [i for i, t in enumerate(ids) if t == bar_id]
    if len(bar_at) > n_bars:
        return list(ids[:bar_at[n_bars] + 1])
    if len(bar_at) == n_bars:
        return [*ids, bar_id]
    raise MozartError(f"the prompt has only {len(bar_at)} bars but {n_bars} were asked for: "
                      f"use --prompt-bars {max(1, len(bar_at))} or less")


@dataclass
class Prompt:
    ids: list[int]          # BOS + the prompt's first bars + the Bar opening the next one
    n_bars: int
    bpm: float | None       # the prompt file's first tempo


def bars_end_tick(score: Any, n_bars: int) -> int:
    """A tick at or after the end of bar `n_bars` (counting from 1), whether bars follow the score's time signatures
    (each starts a new bar at its time) or are all 4/4 (how the tokenizer lays bars without TimeSig tokens)."""
    tpq = int(score.ticks_per_quarter)
    signatures = sorted((int(ts.time), ts.numerator * 4 * tpq / ts.denominator) for ts in score.time_signatures
                        if ts.numerator > 0 and ts.denominator > 0)
    tick, length, counted = 0, 4.0 * tpq, 0
    for start, new_length in signatures:
        if start > tick:
            bars_before = math.ceil((start - tick) / length)  # bars that begin before this signature
            if counted + bars_before >= n_bars:
                break
            counted, tick = counted + bars_before, start
        length = new_length
    return max(n_bars * 4 * tpq, math.ceil(tick + (n_bars - counted) * length))


def load_prompt(path: str | Path, lm: LoadedModel, prompt_bars: int) -> Prompt:
    """Read a MIDI prompt, cut it to its first `prompt_bars` bars (plus one spare) BEFORE tokenizing — a long file
    costs its parse, not its tokenization — then tokenize it like the training data and cut the tokens exactly."""
    import symusic

    from mozart.data.tokenize import encode_score

    path = Path(path)
    if not path.is_file():
        raise MozartError(f"prompt {path} not found")
    try:
        score = symusic.Score(str(path))
    except Exception as exc:  # symusic raises several types for malformed files
        raise MozartError(f"prompt {path} is not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    if score.ticks_per_quarter <= 0:
        raise MozartError(f"prompt {path} has {score.ticks_per_quarter} ticks per quarter note in its header, so it "
                          "has no timing: re-export it from your MIDI editor")
    if score.note_num() == 0:
        raise MozartError(f"prompt {path} has no notes")
    bpm = float(score.tempos[0].qpm) if len(score.tempos) else None
    score = score.clip(0, bars_end_tick(score, prompt_bars + 1), clip_end=False)
    ids = encode_score(lm.tokenizer, score)
    return Prompt([lm.model.config.bos_id, *cut_to_bars(ids, lm.bar_id, prompt_bars)], prompt_bars, bpm)


def bars_for_seconds(seconds: float, bpm: float) -> int:
    return max(1, math.ceil(seconds * bpm / 60.0 / BEATS_PER_BAR))


def tempo_and_length(bpm: float | None, bars: int | None, seconds: float | None,
                     prompt: Prompt | None) -> tuple[float, int]:
    """(output bpm, length in bars) for a request: the asked tempo, else the prompt's, else DEFAULT_BPM; the asked
    bars, else `seconds` at that tempo, else the sample section's default (`sample.bars`)."""
    bpm = bpm or (prompt.bpm if prompt else None) or DEFAULT_BPM
    return bpm, bars or (bars_for_seconds(seconds, bpm) if seconds else DEFAULTS.bars)


# --------------------------------------------------------------------------------------------------------- sampling

def sample_tokens(lm: LoadedModel, composer_ids: Sequence[int] | Sequence[Sequence[float]], settings: Any, *,
                  n_bars: int, prompt_ids: Sequence[int] | None = None, seed: int = 0, max_new_tokens: int = 16384,
                  progress: bool = False, on_progress: Any = None) -> Any:
    """One batch: a row per entry of composer_ids (an id, or blend weights from `resolve_blend`), all continuing the
    same prompt (default: BOS). `on_progress(bars)` is passed to the decoder."""
    import torch

    from mozart.generation.decoder import decode

    prompt = list(prompt_ids) if prompt_ids else [lm.model.config.bos_id]
    rows = torch.tensor([prompt] * len(composer_ids), dtype=torch.long, device=lm.device)
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    threads = torch.get_num_threads()
    if lm.device.type == "cpu" and lm.model.num_params() < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)  # a small model's ops are too short to split: thread sync would dominate
    try:
        return decode(lm.model, rows, torch.tensor(list(composer_ids), device=lm.device), settings,
                        max_new_tokens=max_new_tokens, target_bars=n_bars, grammar=lm.grammar,
                        eos_id=lm.model.config.eos_id, bar_id=lm.bar_id, generator=generator, progress=progress,
                        on_progress=on_progress)
    finally:
        torch.set_num_threads(threads)


def decode_piece(tokenizer: Any, ids: Sequence[int], bpm: float | None) -> tuple[Any, bool]:
    """(symusic Score, decodable). Decodable = miditok decoded every note of the sequence without error.

    `bpm` replaces the score's tempo; None keeps the tempo the tokens carry (tokenizers with Tempo tokens).
    """
    import symusic

    from mozart.data.tokenize import decode_ids

    special = set(tokenizer.special_tokens_ids)
    body = [int(i) for i in ids if int(i) not in special]
    n_pitch = sum(1 for i in body if tokenizer[i].startswith("Pitch_"))
    try:
        score = tokenizer.decode(body if tokenizer.one_token_stream else [body])
        decodable = score.note_num() == n_pitch
    except Exception:  # noqa: BLE001 - an undecodable sample is reported, not fatal
        score, decodable = decode_ids(tokenizer, body), False
    if bpm is not None:
        score.tempos.clear()
        score.tempos.append(symusic.Tempo(0, float(bpm)))
    return score, decodable


def score_seconds(score: Any) -> float:
    return float(score.to("second").end())


def write_midi(score: Any, path: str | Path) -> None:
    from mozart.infra.atomic import atomic_path

    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))
