"""What one press of Generate does on `mozart serve`: the form checked into a `PieceRequest` (every out-of-range or
malformed value is a `RequestError` naming the field and its range), then a `Job` that decodes the piece on the
generation engine and writes `piece.mid`, `piece.wav` (FluidSynth, mozart.report.render) and `roll.png` into its own
folder under the app's output folder, reporting progress as it goes.
"""
from __future__ import annotations

import math
import random
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mozart.errors import MozartError
from mozart.generation.engine import (DEFAULTS, decode_piece, is_conditioned, tempo_and_length,
                                      load_prompt, resolve_conditioning, sample_tokens, score_seconds, write_midi)

MAX_UPLOAD_BYTES = 2 * 1024 * 1024   # a request (form + prompt MIDI) larger than this is refused with 413
MIDI_MAGIC = b"MThd"
FILES = {"midi": "piece.mid", "wav": "piece.wav", "roll": "roll.png"}   # the only names /files/ serves

# field -> (type, lowest, highest): the form's limits, shown on the page and in every range message
LIMITS: dict[str, tuple[type, float, float]] = {
    "bars": (int, 1, 128),
    "seconds": (float, 1, 600),
    "bpm": (float, 20, 300),
    "cfg": (float, 0, 10),
    "temperature": (float, 0, 3),
    "seed": (int, 0, 2**31 - 1),
    "prompt_bars": (int, 1, 64),
}


class RequestError(MozartError):
    """A form value the app refuses; the message names the field and what it accepts (HTTP 400)."""


def _number(form: Mapping[str, str], name: str) -> float | int | None:
    """The form field as its LIMITS type, None when empty; RequestError when malformed or out of range."""
    text = (form.get(name) or "").strip()
    if not text:
        return None
    kind, low, high = LIMITS[name]
    try:
        value = kind(text) if kind is int else float(text)
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise RequestError(f"{name} must be {'a whole number' if kind is int else 'a number'} from {low:g} to "
                           f"{high:g}, got {text!r}")
    if not low <= value <= high:
        raise RequestError(f"{name} must be from {low:g} to {high:g}, got {text}")
    return value


@dataclass
class PieceRequest:
    """A checked form: every field within LIMITS; composer resolved against the model."""
    conditioning: int | list[float]      # composer id or blend weights (mozart.generation.engine.resolve_conditioning)
    composer_name: str
    bars: int | None
    seconds: float | None
    bpm: float | None
    cfg_scale: float
    temperature: float
    seed: int
    end: bool
    prompt_bars: int

    @classmethod
    def from_form(cls, form: Mapping[str, str], composers: dict[str, Any]) -> "PieceRequest":
        values = {name: _number(form, name) for name in LIMITS}
        unit = (form.get("unit") or "bars").strip()
        if unit not in ("bars", "seconds"):
            raise RequestError(f"unit must be bars or seconds, got {unit!r}")
        length = (form.get("length") or "").strip()
        if length:  # the page sends one length field and its unit
            values[unit] = _number({unit: length}, unit)
        if values["bars"] is not None and values["seconds"] is not None:
            raise RequestError("give the length in bars or in seconds, not both")
        conditioning, name = resolve_conditioning((form.get("composer") or "").strip() or None, composers)
        cfg = values["cfg"] if values["cfg"] is not None else (DEFAULTS.cfg_scale if is_conditioned(conditioning)
                                                              else 1.0)
        seed = values["seed"] if values["seed"] is not None else random.SystemRandom().randrange(2**31)
        return cls(conditioning, name, values["bars"], values["seconds"], values["bpm"], float(cfg),
                   float(values["temperature"] if values["temperature"] is not None else DEFAULTS.temperature),
                   int(seed), (form.get("end") or "on").strip().lower() not in ("0", "off", "false", "no"),
                   int(values["prompt_bars"] or DEFAULTS.prompt_bars))


def check_midi_upload(data: bytes, filename: str) -> None:
    """RequestError unless `data` starts like a Standard MIDI File."""
    if not data.startswith(MIDI_MAGIC):
        raise RequestError(f"{filename or 'the upload'} is not a MIDI file (a .mid file starts with 'MThd'): "
                           "upload a Standard MIDI File to continue, or leave the prompt empty")


@dataclass
class Job:
    """One generation: its folder, its state for the page's progress poll, and the files it wrote."""
    job_id: str
    folder: Path
    state: str = "queued"               # queued | generating | rendering | done | error
    bars_done: int = 0
    bars_total: int = 0
    message: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)   # kind -> URL
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> dict[str, Any]:
        with self.lock:
            return {"job": self.job_id, "state": self.state, "bars_done": self.bars_done,
                    "bars_total": self.bars_total, "message": self.message, "summary": dict(self.summary),
                    "files": dict(self.files)}

    def update(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)


def plan(request: PieceRequest, lm: Any, prompt_path: Path | None) -> tuple[Any, float, int]:
    """(prompt or None, bpm, bars) for a request, checked against the prompt: MozartError when they do not fit."""
    prompt = load_prompt(prompt_path, lm, request.prompt_bars) if prompt_path is not None else None
    bpm, n_bars = tempo_and_length(request.bpm, request.bars, request.seconds, prompt)
    if n_bars > LIMITS["bars"][2]:
        raise RequestError(f"{request.seconds:g} seconds at {bpm:g} bpm is {n_bars} bars; the most is "
                           f"{LIMITS['bars'][2]:g}: ask for fewer seconds or a slower tempo")
    if prompt and n_bars <= prompt.n_bars:
        raise RequestError(f"the length ({n_bars} bars) must be more than the prompt's {prompt.n_bars} bars: the "
                           "length counts the prompt's bars too")
    return prompt, bpm, n_bars


def run_job(job: Job, lm: Any, request: PieceRequest, prompt: Any, bpm: float, n_bars: int, soundfont: str,
            url_for_file: Any) -> None:
    """Decode, write MIDI, render WAV and piano roll into job.folder; record progress and the outcome on `job`.

    Never raises: a failure is the job's "error" state with a one-line message (the traceback goes to the server's
    log only, never to the page).
    """
    from mozart.generation.decoder import SamplingSettings
    from mozart.report.render import render_piano_roll, render_wav

    try:
        job.update(state="generating", bars_total=n_bars, bars_done=prompt.n_bars if prompt else 0)
        settings = SamplingSettings.from_config(DEFAULTS, temperature=request.temperature,
                                                cfg_scale=request.cfg_scale, end=request.end)
        gen = sample_tokens(lm, [request.conditioning], settings, n_bars=n_bars,
                            prompt_ids=prompt.ids if prompt else None, seed=request.seed,
                            max_new_tokens=DEFAULTS.max_tokens, on_progress=lambda bars: job.update(bars_done=bars))
        keep_tempo_tokens = request.bpm is None and bool(lm.tokenizer.config.use_tempos) and prompt is None
        score, _ = decode_piece(lm.tokenizer, gen.tokens[0], None if keep_tempo_tokens else bpm)
        midi = job.folder / FILES["midi"]
        write_midi(score, midi)
        job.update(state="rendering", bars_done=int(gen.n_bars[0]),
                   files={"midi": url_for_file(job.job_id, FILES["midi"])},
                   summary={"composer": request.composer_name, "bars": int(gen.n_bars[0]), "bpm": bpm,
                            "seconds": round(score_seconds(score), 1), "notes": score.note_num(),
                            "seed": request.seed, "cfg": request.cfg_scale, "temperature": request.temperature,
                            "ended_by": gen.stop_reason[0]})
        render_piano_roll(midi, job.folder / FILES["roll"], f"{request.composer_name} — seed {request.seed}")
        files = {"midi": url_for_file(job.job_id, FILES["midi"]), "roll": url_for_file(job.job_id, FILES["roll"])}
        message = ""
        try:
            render_wav(midi, job.folder / FILES["wav"], soundfont)
            files["wav"] = url_for_file(job.job_id, FILES["wav"])
        except MozartError as exc:  # no soundfont / FluidSynth: the MIDI and the roll are still useful
            message = f"no audio: {exc}"
        job.update(state="done", files=files, message=message)
    except MozartError as exc:
        job.update(state="error", message=str(exc))
    except Exception as exc:  # noqa: BLE001 - the page gets one line, the log gets the traceback
        traceback.print_exc()
        job.update(state="error", message=f"internal error ({type(exc).__name__}); see the server's log")
