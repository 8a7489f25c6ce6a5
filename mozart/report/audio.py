"""FluidSynth audio: `render_wav` plays a MIDI file on a General MIDI acoustic piano into a WAV.

It drives the synthesizer itself (no audio driver, no FluidSynth MIDI player): every note of the score is played on
program 0, events in time order, and the audio between two events is pulled with `get_samples` in fixed blocks and
streamed into the WAV, so memory stays bounded for pieces of any length. A MIDI file with no notes renders a short
silent WAV (the release tail only, peak and rms 0) rather than failing.

Its own module (not mozart.report.render) so that the evaluate stage, which renders audio for structureness SI,
does not depend on the listening page's code: editing the page's CSS reruns only render.
"""
from __future__ import annotations

import ctypes
import math
import wave
from pathlib import Path

import numpy as np

from mozart.infra.atomic import atomic_path
from mozart.errors import MozartError

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
RELEASE_TAIL_S = 1.5     # audio kept after the last note-off, so releases and reverb ring out instead of clipping
BLOCK_FRAMES = 4096      # frames pulled from the synth per call: bounded memory, few Python round trips
SYNTH_GAIN = 1.0         # FluidSynth's default 0.2 is very quiet for solo piano; 1.0 still leaves headroom for dense chords
SUSTAIN_PEDAL = 64       # the only controller forwarded: piano MIDI relies on it, the others only add risk

_FLUID_WARN, _FLUID_INFO, _FLUID_DBG = 2, 3, 4


def _load_fluidsynth():
    """Import pyfluidsynth (it loads libfluidsynth on import) and silence its warning/info/debug log on stderr."""
    try:
        import fluidsynth
    except ImportError as exc:
        raise MozartError(f"cannot load FluidSynth ({exc}): install it with `apt-get install libfluidsynth3` "
                          "and `pip install pyfluidsynth`") from None
    set_log = getattr(fluidsynth._fl, "fluid_set_log_function", None)
    if set_log is not None:  # a NULL handler disables that level; errors and panics stay visible
        set_log.restype = ctypes.c_void_p
        set_log.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for level in (_FLUID_WARN, _FLUID_INFO, _FLUID_DBG):
            set_log(level, None, None)
    return fluidsynth


def check_soundfont(soundfont: str | Path) -> Path:
    """The soundfont path, or a MozartError naming it and the two ways to fix it."""
    path = Path(soundfont).expanduser()
    if not path.is_file():
        raise MozartError(f"soundfont {path} not found: install the General MIDI soundfont with "
                          "`apt-get install fluid-soundfont-gm`, or set render.soundfont in params.yaml to an .sf2 file")
    return path


def _load_score(midi_path: Path, ttype: str):
    from symusic import Score

    if not midi_path.is_file():
        raise MozartError(f"MIDI file {midi_path} not found: run the sample stage first (or check the path)")
    try:
        return Score(midi_path, ttype=ttype)
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError for corrupt files
        raise MozartError(f"cannot read MIDI file {midi_path}: {exc}") from None


def _midi_events(score) -> list[tuple[float, int, int, int]]:
    """(seconds, order, a, b) sorted in time order; order 0 = note off, 1 = pedal, 2 = note on.

    Offs sort before ons at the same instant so a repeated note is re-struck rather than cut short.
    """
    events: list[tuple[float, int, int, int]] = []
    for track in score.tracks:
        if track.is_drum:
            continue  # a piano rendering has no use for percussion
        notes = track.notes.numpy()
        for t, d, p, v in zip(notes["time"], notes["duration"], notes["pitch"], notes["velocity"]):
            p, v = int(p), max(1, min(127, int(v)))
            events.append((float(t), 2, p, v))
            events.append((float(t) + max(float(d), 0.0), 0, p, 0))
        controls = track.controls.numpy()
        for t, number, value in zip(controls["time"], controls["number"], controls["value"]):
            if int(number) == SUSTAIN_PEDAL:
                events.append((float(t), 1, SUSTAIN_PEDAL, int(value)))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


class _WavStream:
    """Pull audio from the synth in blocks into an open WAV file, keeping peak and sum of squares as it goes."""

    def __init__(self, synth, wav: wave.Wave_write):
        self.synth, self.wav = synth, wav
        self.frames = 0
        self.peak = 0
        self.sum_squares = 0.0

    def advance_to(self, frame: int) -> None:
        while self.frames < frame:
            n = min(BLOCK_FRAMES, frame - self.frames)
            block = np.asarray(self.synth.get_samples(n), dtype=np.int16)
            if block.size:
                self.peak = max(self.peak, int(np.abs(block.astype(np.int32)).max()))
                self.sum_squares += float(np.square(block.astype(np.float64)).sum())
            self.wav.writeframes(block.astype("<i2").tobytes())
            self.frames += n


def render_wav(midi_path: str | Path, wav_path: str | Path, soundfont: str | Path = DEFAULT_SOUNDFONT,
               sample_rate: int = 44100) -> dict[str, float]:
    """Render `midi_path` to a 16-bit stereo WAV at `wav_path` (written atomically) on a GM acoustic piano.

    Returns {"seconds": duration of the WAV, "peak": max |sample| in [0, 1], "rms": root mean square in [0, 1]}.
    A MIDI with no notes gives a silent WAV of RELEASE_TAIL_S seconds (peak = rms = 0).
    """
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    sf_path = check_soundfont(soundfont)
    if sample_rate < 8000 or sample_rate > 192000:
        raise MozartError(f"render.sample_rate = {sample_rate} is out of range: use e.g. 44100 or 48000")
    events = _midi_events(_load_score(midi_path, "second"))
    fluidsynth = _load_fluidsynth()

    synth = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(sf_path))
        if sfid < 0:
            raise MozartError(f"soundfont {sf_path} could not be loaded (not a valid .sf2 file?): reinstall it with "
                              "`apt-get install --reinstall fluid-soundfont-gm` or point render.soundfont elsewhere")
        synth.program_select(0, sfid, 0, 0)  # channel 0, bank 0, program 0: Acoustic Grand Piano
        sounding = [0] * 128  # overlapping notes of one pitch: only the last one to end sends the note-off
        with atomic_path(wav_path) as tmp:
            with wave.open(str(tmp), "wb") as wav:
                wav.setnchannels(2)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)
                stream = _WavStream(synth, wav)
                for seconds, kind, a, b in events:
                    stream.advance_to(int(round(seconds * sample_rate)))
                    if kind == 2:
                        sounding[a] += 1
                        synth.noteon(0, a, b)
                    elif kind == 0:
                        sounding[a] -= 1
                        if sounding[a] == 0:
                            synth.noteoff(0, a)
                    else:
                        synth.cc(0, a, b)
                stream.advance_to(stream.frames + int(round(RELEASE_TAIL_S * sample_rate)))
    finally:
        synth.delete()

    n_values = 2 * stream.frames
    return {
        "seconds": stream.frames / sample_rate,
        "peak": stream.peak / 32768.0,
        "rms": math.sqrt(stream.sum_squares / n_values) / 32768.0 if n_values else 0.0,
    }
