"""Generate pieces from a trained model directory: `mozart generate`, `mozart composers`, and the library calls the
sample stage shares (load a model dir, pick a composer, cut a prompt to bars, sample, decode to a MIDI Score).

Length is counted in bars: `--seconds` becomes bars at the output tempo (4 beats per bar). A continuation keeps the
prompt's first `--prompt-bars` bars token for token (the prompt is cut right after the Bar token that opens the next
bar, so the model cannot add notes to the prompt's bars) and continues to `--bars` bars in total.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mozart.atomic import read_json
from mozart.config import SampleConfig
from mozart.errors import ConfigError, MozartError

DEFAULT_MODEL_DIR = "models/final"
DEFAULT_BPM = 120.0
DEFAULT_BARS = 16
BEATS_PER_BAR = 4  # --seconds -> bars assumes 4/4 (the tokenizer's default without TimeSig tokens)
DEFAULTS = SampleConfig()  # one source of truth for sampling defaults: params.yaml's sample section
SMALL_MODEL_PARAMS = 5_000_000  # below this, decode on one CPU thread (measured faster on 2 cores)
UNCONDITIONAL = {"", "none", "any", "unconditional", "<unconditional>"}


# --------------------------------------------------------------------------------------------------- model directory

def read_composers(model_dir: str | Path) -> dict[str, Any]:
    """The model directory's composers.json (no torch needed)."""
    path = Path(model_dir) / "composers.json"
    if not Path(model_dir).is_dir():
        raise MozartError(f"model directory {model_dir} not found: train one with `dvc repro train`, "
                          "or pass --model DIR (a folder with config.json, model.safetensors, composers.json)")
    return read_json(path, f"{model_dir} is not a complete model directory (train one with `dvc repro train`)")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    grammar: Any            # RemiGrammar or None (unsupported tokenizer, or switched off)
    composers: dict[str, Any]
    model_dir: Path
    device: Any
    precision: str = "fp32"   # what the model runs in (mozart.quantize), after resolving "auto"

    @property
    def bar_id(self) -> int | None:
        return self.tokenizer.vocab.get("Bar_None")


def load_model_dir(model_dir: str | Path, device: str = "auto", use_grammar: bool = True,
                   precision: str = "fp32") -> LoadedModel:
    """Model (eval mode, on `device`, in `precision`: auto | fp32 | bf16 | int8 | int4), tokenizer, grammar and
    composers (mozart.quantize.resolve_precision says what auto is)."""
    from mozart.device import pick_device
    from mozart.grammar import grammar_for_tokenizer
    from mozart.model import load_model
    from mozart.quantize import for_inference, resolve_precision
    from mozart.tokenize import load_tokenizer

    model_dir = Path(model_dir)
    composers = read_composers(model_dir)
    torch_device = pick_device(device)
    precision = resolve_precision(precision, torch_device)
    model = for_inference(load_model(model_dir, torch_device), precision)
    tokenizer = load_tokenizer(model_dir / "tokenizer.json")
    grammar = grammar_for_tokenizer(tokenizer, model.config.vocab_size, enabled=use_grammar)
    return LoadedModel(model, tokenizer, grammar, composers, model_dir, torch_device, precision)


def known_composers(composers: dict[str, Any]) -> list[str]:
    """Every name a user may ask for: the model's composers and the rare ones folded into OTHER."""
    names = [n for i, n in enumerate(composers["names"]) if i != composers.get("unconditional_id", 0)]
    return list(dict.fromkeys([*names, *composers.get("composer_to_id", {})]))


def resolve_composer(query: str | None, composers: dict[str, Any]) -> tuple[int, str]:
    """(composer_id, display name) for any spelling `mozart.names` maps; unknown names list the closest ones."""
    from mozart.names import closest_composers, match_composer

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


def load_prompt(path: str | Path, lm: LoadedModel, prompt_bars: int) -> Prompt:
    """Read a MIDI prompt, tokenize it like the training data, and keep its first `prompt_bars` bars."""
    import symusic

    from mozart.tokenize import encode_score

    path = Path(path)
    if not path.is_file():
        raise MozartError(f"prompt {path} not found")
    try:
        score = symusic.Score(str(path))
    except Exception as exc:  # symusic raises several types for malformed files
        raise MozartError(f"prompt {path} is not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    if score.note_num() == 0:
        raise MozartError(f"prompt {path} has no notes")
    ids = encode_score(lm.tokenizer, score)
    bpm = float(score.tempos[0].qpm) if len(score.tempos) else None
    return Prompt([lm.model.config.bos_id, *cut_to_bars(ids, lm.bar_id, prompt_bars)], prompt_bars, bpm)


def bars_for_seconds(seconds: float, bpm: float) -> int:
    return max(1, math.ceil(seconds * bpm / 60.0 / BEATS_PER_BAR))


# --------------------------------------------------------------------------------------------------------- sampling

def sample_tokens(lm: LoadedModel, composer_ids: Sequence[int], settings: Any, *, n_bars: int,
                  prompt_ids: Sequence[int] | None = None, seed: int = 0, max_new_tokens: int = 16384,
                  progress: bool = False) -> Any:
    """One batch: a row per entry of composer_ids, all continuing the same prompt (default: BOS)."""
    import torch

    from mozart.sampling import generate

    prompt = list(prompt_ids) if prompt_ids else [lm.model.config.bos_id]
    rows = torch.tensor([prompt] * len(composer_ids), dtype=torch.long, device=lm.device)
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    threads = torch.get_num_threads()
    if lm.device.type == "cpu" and lm.model.num_params() < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)  # a small model's ops are too short to split: thread sync would dominate
    try:
        return generate(lm.model, rows, torch.tensor(list(composer_ids), device=lm.device), settings,
                        max_new_tokens=max_new_tokens, target_bars=n_bars, grammar=lm.grammar,
                        eos_id=lm.model.config.eos_id, bar_id=lm.bar_id, generator=generator, progress=progress)
    finally:
        torch.set_num_threads(threads)


def decode_piece(tokenizer: Any, ids: Sequence[int], bpm: float | None) -> tuple[Any, bool]:
    """(symusic Score, decodable). Decodable = miditok decoded every note of the sequence without error.

    `bpm` replaces the score's tempo; None keeps the tempo the tokens carry (tokenizers with Tempo tokens).
    """
    import symusic

    from mozart.tokenize import decode_ids

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
    from mozart.atomic import atomic_path

    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))


# --------------------------------------------------------------------------------------------------------------- CLI

EXAMPLES = """examples:
  mozart generate --composer chopin --bars 32 --out chopin.mid
  mozart generate --composer "J.S. Bach" --seconds 60 --bpm 100 --num-samples 4 --out bach.mid --wav
  mozart generate --prompt theme.mid --prompt-bars 8 --bars 32 --composer mozart --out continued.mid
  mozart generate --request "two minutes like Chopin at 90 bpm"
  mozart generate --composer beethoven --cfg 2.0 --temperature 0.9 --top-p 0.9 --seed 7
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLES
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--composer", metavar="NAME",
                   help="composer style, any spelling (see `mozart composers`); omit for unconditional")
    p.add_argument("--request", metavar="TEXT",
                   help='plain-English request, e.g. "16 bars like Bach, slow"; explicit options win')
    length = p.add_mutually_exclusive_group()
    length.add_argument("--bars", type=int, help=f"length in bars (default {DEFAULT_BARS})")
    length.add_argument("--seconds", type=float, help="length in seconds (converted to 4/4 bars at --bpm)")
    p.add_argument("--bpm", type=float, help=f"output tempo (default: the prompt's tempo, else {DEFAULT_BPM:g})")
    p.add_argument("--prompt", metavar="MIDI", help="continue this MIDI file (its first --prompt-bars bars are kept)")
    p.add_argument("--prompt-bars", type=int, default=DEFAULTS.prompt_bars,
                   help=f"bars of the prompt to keep (default {DEFAULTS.prompt_bars})")
    p.add_argument("--cfg", type=float, metavar="SCALE",
                   help=f"classifier-free guidance scale, 1 = off (default {DEFAULTS.cfg_scale:g} with a composer)")
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                   help=f"sampling temperature, 0 = greedy (default {DEFAULTS.temperature:g})")
    p.add_argument("--top-k", type=int, default=DEFAULTS.top_k, help="keep the k likeliest tokens, 0 = off")
    p.add_argument("--top-p", type=float, default=DEFAULTS.top_p,
                   help=f"nucleus sampling mass, 1 = off (default {DEFAULTS.top_p:g})")
    p.add_argument("--repetition-penalty", type=float, default=DEFAULTS.repetition_penalty,
                   help=f"penalty on recently used pitches, 1 = off (default {DEFAULTS.repetition_penalty:g})")
    p.add_argument("--num-samples", type=int, default=1, help="pieces to write (default 1)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="pieces generated at once")
    p.add_argument("--seed", type=int, help="random seed; the same seed gives the same piece (default: random)")
    p.add_argument("--max-tokens", type=int, default=DEFAULTS.max_tokens, help="stop a piece after this many tokens")
    p.add_argument("--out", default="generated.mid", metavar="PATH.mid",
                   help="output MIDI; with several samples PATH-1.mid, PATH-2.mid, ... (default generated.mid)")
    p.add_argument("--wav", action="store_true", help="also render each piece to a WAV beside the MIDI")
    p.add_argument("--no-grammar", action="store_true", help="turn off grammar-constrained decoding")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8", "int4"),
                   help="inference weights: auto (default) = int4 on a CPU, fp32 on a GPU; fp32 is exact; int8 / int4 "
                        "are weight-only quantised, CPU only (int4 ~3x faster than fp32 at batch 1, same held-out loss "
                        "within 0.1 %%: BENCHMARKS.md)")


def _validate(args: argparse.Namespace) -> None:
    checks = [(args.bars is None or args.bars > 0, f"--bars must be > 0, got {args.bars}"),
              (args.seconds is None or args.seconds > 0, f"--seconds must be > 0, got {args.seconds}"),
              (args.bpm is None or 0 < args.bpm <= 400, f"--bpm must be in (0, 400], got {args.bpm}"),
              (args.prompt_bars > 0, f"--prompt-bars must be > 0, got {args.prompt_bars}"),
              (args.num_samples > 0, f"--num-samples must be > 0, got {args.num_samples}"),
              (args.batch_size > 0, f"--batch-size must be > 0, got {args.batch_size}"),
              (args.max_tokens > 0, f"--max-tokens must be > 0, got {args.max_tokens}"),
              (Path(args.out).suffix.lower() in (".mid", ".midi"), f"--out must end in .mid, got {args.out}")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _apply_request(args: argparse.Namespace, composers: dict[str, Any]) -> None:
    from mozart.request import parse_request

    known = known_composers(composers)
    req = parse_request(args.request, known)
    if req.missing_composer and args.composer is None:
        raise MozartError(f"this model was not trained on {req.missing_composer}; it knows: {', '.join(known)} "
                          "(or leave the composer out for unconditional music)")
    print(req.describe())
    if args.composer is None:
        args.composer = req.composer
    if args.bars is None and args.seconds is None:
        args.bars, args.seconds = req.bars, req.seconds
    if args.bpm is None:
        args.bpm = req.bpm


def output_paths(out: str | Path, n: int) -> list[Path]:
    out = Path(out)
    return [out] if n == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, n + 1)]


def main(args: argparse.Namespace) -> int:
    from mozart.sampling import SamplingSettings

    _validate(args)
    composers = read_composers(args.model)
    if args.request:
        _apply_request(args, composers)
    composer_id, composer_name = resolve_composer(args.composer, composers)
    cfg_scale = args.cfg if args.cfg is not None else (DEFAULTS.cfg_scale if composer_id else 1.0)
    settings = SamplingSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                repetition_penalty=args.repetition_penalty,
                                repetition_window=DEFAULTS.repetition_window, cfg_scale=cfg_scale)
    lm = load_model_dir(args.model, args.device, use_grammar=not args.no_grammar, precision=args.precision)
    prompt = load_prompt(args.prompt, lm, args.prompt_bars) if args.prompt else None
    bpm = args.bpm or (prompt.bpm if prompt else None) or DEFAULT_BPM
    n_bars = args.bars or (bars_for_seconds(args.seconds, bpm) if args.seconds else DEFAULT_BARS)
    if prompt and n_bars <= prompt.n_bars:
        raise ConfigError(f"--bars ({n_bars}) must be more than --prompt-bars ({prompt.n_bars}): "
                          "the length counts the prompt's bars too")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"{composer_name} (composer id {composer_id}), {n_bars} bars at {bpm:g} bpm, cfg {cfg_scale:g}, "
          f"seed {seed}, device {lm.device} ({lm.precision})" + (", grammar off" if lm.grammar is None else ""))
    keep_tempo_tokens = args.bpm is None and bool(lm.tokenizer.config.use_tempos) and prompt is None
    paths = output_paths(args.out, args.num_samples)
    for start in range(0, args.num_samples, args.batch_size):
        n = min(args.batch_size, args.num_samples - start)
        gen = sample_tokens(lm, [composer_id] * n, settings, n_bars=n_bars, prompt_ids=prompt.ids if prompt else None,
                            seed=seed + start, max_new_tokens=args.max_tokens, progress=True)
        for row, path in enumerate(paths[start:start + n]):
            score, decodable = decode_piece(lm.tokenizer, gen.tokens[row], None if keep_tempo_tokens else bpm)
            write_midi(score, path)
            line = (f"wrote {path}: {gen.n_bars[row]} bars, {len(gen.tokens[row]) - gen.n_prompt} new tokens, "
                    f"{score_seconds(score):.1f} s, {score.note_num()} notes")
            if not decodable:
                line += " (some tokens did not decode)"
            if gen.stop_reason[row] == "max_tokens":
                line += f" (stopped at --max-tokens {args.max_tokens})"
            print(line)
            if args.wav:
                from mozart.render import render_wav

                wav = path.with_suffix(".wav")
                render_wav(path, wav)
                print(f"wrote {wav}")
        print(f"{gen.tokens_per_s:.0f} tokens/s", file=sys.stderr)
    return 0


def add_composers_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory (default: {DEFAULT_MODEL_DIR})")


def composers_main(args: argparse.Namespace) -> int:
    composers = read_composers(args.model)
    names, counts = composers["names"], composers.get("n_pieces", [0] * len(composers["names"]))
    uncond, other = composers.get("unconditional_id", 0), composers.get("other_id")
    print(f"{'id':>3}  {'composer':<32} pieces")
    for cid, (name, count) in enumerate(zip(names, counts)):
        if cid != uncond:
            print(f"{cid:>3}  {name:<32} {count:>6}")
    if other is not None:
        rare = sorted(n for n, i in composers.get("composer_to_id", {}).items() if i == other)
        if rare:
            print(textwrap.fill(f"OTHER (id {other}) holds {len(rare)} rarer composers: {', '.join(rare)}",
                                width=100))
    print("(omit --composer, or pass --composer none, for unconditional generation)")
    return 0
