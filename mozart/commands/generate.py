"""`mozart generate`: argparse and printing around the generation engine (mozart.generation.engine)."""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
from pathlib import Path
from typing import Any

from mozart.config import SampleConfig
from mozart.errors import ConfigError, MozartError
from mozart.generation.engine import (DEFAULT_BPM, DEFAULT_MODEL_DIR, DEFAULTS, tempo_and_length,
                                      decode_piece, is_conditioned, known_composers, load_model_dir, load_prompt,
                                      read_composers, resolve_conditioning, sample_tokens, score_seconds,
                                      write_midi)

EXAMPLES = """examples:
  mozart generate --composer chopin --bars 32 --out chopin.mid
  mozart generate --composer "J.S. Bach" --seconds 60 --bpm 100 --num-samples 4 --out bach.mid --wav
  mozart generate --prompt theme.mid --prompt-bars 8 --bars 32 --composer mozart --out continued.mid
  mozart generate --request "two minutes like Chopin at 90 bpm"
  mozart generate --composer beethoven --cfg 2.0 --temperature 0.9 --top-p 0.9 --seed 7
  mozart generate --composer "chopin:0.7,debussy:0.3" --bars 16 --out blend.mid
  mozart generate --composer bach --bars 16 --no-end      # stop at the bar count instead of closing
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLES
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--composer", metavar="NAME",
                   help="composer style, any spelling (see `mozart composers`), or a blend NAME:WEIGHT,NAME:WEIGHT "
                        "(e.g. \"chopin:0.7,debussy:0.3\"; weights are normalised, the style is the weighted sum "
                        "of the composers' embeddings); omit for unconditional")
    p.add_argument("--request", metavar="TEXT",
                   help='plain-English request, e.g. "16 bars like Bach, slow"; explicit options win')
    length = p.add_mutually_exclusive_group()
    length.add_argument("--bars", type=int, help=f"length in bars (default {DEFAULTS.bars}, the sample section's)")
    length.add_argument("--seconds", type=float, help="length in seconds (converted to 4/4 bars at --bpm)")
    p.add_argument("--bpm", type=float, help=f"output tempo (default: the prompt's tempo, else {DEFAULT_BPM:g})")
    p.add_argument("--prompt", metavar="MIDI", help="continue this MIDI file (its first --prompt-bars bars are kept)")
    p.add_argument("--prompt-bars", type=int, default=DEFAULTS.prompt_bars,
                   help=f"bars of the prompt to keep (default {DEFAULTS.prompt_bars})")
    p.add_argument("--cfg-scale", "--cfg", type=float, metavar="SCALE", dest="cfg_scale",
                   help=f"classifier-free guidance scale, 1 = off (default {DEFAULTS.cfg_scale:g} with a composer)")
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                   help=f"sampling temperature, 0 = greedy (default {DEFAULTS.temperature:g})")
    p.add_argument("--top-k", type=int, default=DEFAULTS.top_k, help="keep the k likeliest tokens, 0 = off")
    p.add_argument("--top-p", type=float, default=DEFAULTS.top_p,
                   help=f"nucleus sampling mass, 1 = off (default {DEFAULTS.top_p:g})")
    p.add_argument("--repetition-penalty", type=float, default=DEFAULTS.repetition_penalty,
                   help=f"penalty on recently used pitches, 1 = off (default {DEFAULTS.repetition_penalty:g})")
    p.add_argument("--end", action=argparse.BooleanOptionalAction, default=DEFAULTS.end,
                   help="finish the piece at the requested length: the last bar is one closing chord and the piece "
                        "ends with EOS (default: on); --no-end stops when the bar count is reached")
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


# flags that set a SampleConfig field of the same name (their defaults are that field's default: params.yaml's)
SAMPLE_FLAGS = ("temperature", "top_k", "top_p", "repetition_penalty", "batch_size", "max_tokens", "end")


def sample_config(args: argparse.Namespace, cfg_scale: float) -> SampleConfig:
    """The command's sampling options as a SampleConfig, range-checked by mozart.config like params.yaml's."""
    values = {key: getattr(args, key) for key in SAMPLE_FLAGS}
    try:
        return dataclasses.replace(DEFAULTS, cfg_scale=cfg_scale, **values)
    except ConfigError as exc:  # name the flag the user typed, not the params.yaml key
        message = str(exc)
        for key in (*SAMPLE_FLAGS, "cfg_scale"):
            message = message.replace(f"sample.{key} ", f"--{key.replace('_', '-')} ")
        raise ConfigError(message) from None


MAX_SEED = 2**62   # torch seeds are 64-bit; each batch adds its offset


def _validate(args: argparse.Namespace) -> None:
    """Every numeric option and the device name, before any model is loaded: one ConfigError line naming the option."""
    from mozart.infra.device import check_device_name

    checks = [(args.bars is None or args.bars > 0, f"--bars must be > 0, got {args.bars}"),
              (args.seconds is None or 0 < args.seconds < math.inf, f"--seconds must be > 0 and finite, got "
                                                                     f"{args.seconds}"),
              (args.bpm is None or 0 < args.bpm <= 400, f"--bpm must be in (0, 400], got {args.bpm}"),
              (args.prompt_bars > 0, f"--prompt-bars must be > 0, got {args.prompt_bars}"),
              (args.num_samples > 0, f"--num-samples must be > 0, got {args.num_samples}"),
              (args.seed is None or 0 <= args.seed < MAX_SEED, f"--seed must be in 0..{MAX_SEED - 1}, got {args.seed}"),
              (Path(args.out).suffix.lower() in (".mid", ".midi"), f"--out must end in .mid, got {args.out}")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_device_name(args.device, "--device")


def _apply_request(args: argparse.Namespace, composers: dict[str, Any]) -> None:
    from mozart.generation.request import parse_request

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
    from mozart.generation.decoder import SamplingSettings

    _validate(args)
    cfg = sample_config(args, DEFAULTS.cfg_scale if args.cfg_scale is None else args.cfg_scale)  # before any load
    composers = read_composers(args.model)
    if args.request:
        _apply_request(args, composers)
    composer_id, composer_name = resolve_conditioning(args.composer, composers)
    if args.cfg_scale is None and not is_conditioned(composer_id):  # guidance needs a composer to guide towards
        cfg = dataclasses.replace(cfg, cfg_scale=1.0)
    settings = SamplingSettings.from_config(cfg)
    lm = load_model_dir(args.model, args.device, use_grammar=not args.no_grammar, precision=args.precision)
    prompt = load_prompt(args.prompt, lm, args.prompt_bars) if args.prompt else None
    bpm, n_bars = tempo_and_length(args.bpm, args.bars, args.seconds, prompt)
    if prompt and n_bars <= prompt.n_bars:
        raise ConfigError(f"--bars ({n_bars}) must be more than --prompt-bars ({prompt.n_bars}): "
                          "the length counts the prompt's bars too")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    which = "blend" if isinstance(composer_id, list) else f"composer id {composer_id}"
    print(f"{composer_name} ({which}), {n_bars} bars at {bpm:g} bpm, cfg {cfg.cfg_scale:g}, "
          f"seed {seed}, device {lm.device} ({lm.precision})" + (", grammar off" if lm.grammar is None else ""))
    keep_tempo_tokens = args.bpm is None and bool(lm.tokenizer.config.use_tempos) and prompt is None
    paths = output_paths(args.out, args.num_samples)
    for start in range(0, args.num_samples, cfg.batch_size):
        n = min(cfg.batch_size, args.num_samples - start)
        gen = sample_tokens(lm, [composer_id] * n, settings, n_bars=n_bars, prompt_ids=prompt.ids if prompt else None,
                            seed=seed + start, max_new_tokens=cfg.max_tokens, progress=True)
        for row, path in enumerate(paths[start:start + n]):
            score, decodable = decode_piece(lm.tokenizer, gen.tokens[row], None if keep_tempo_tokens else bpm)
            write_midi(score, path)
            line = (f"wrote {path}: {gen.n_bars[row]} bars, {len(gen.tokens[row]) - gen.n_prompt} new tokens, "
                    f"{score_seconds(score):.1f} s, {score.note_num()} notes")
            if not decodable:
                line += " (some tokens did not decode)"
            if gen.stop_reason[row] == "max_tokens":
                line += f" (stopped at --max-tokens {cfg.max_tokens})"
            print(line)
            if args.wav:
                from mozart.report.render import render_wav

                wav = path.with_suffix(".wav")
                render_wav(path, wav)
                print(f"wrote {wav}")
        print(f"{gen.tokens_per_s:.0f} tokens/s", file=sys.stderr)
    return 0


