"""A seeded generator of messy MIDI corpora for the reliability tests (issue #6).

`make_fuzz_corpus(out_dir, n, seed)` writes `n` files under `out_dir/<Composer>/...`: valid pieces (built with
symusic), legal-but-odd ones (zero tracks, drums only, type 2, hours long, zero-duration and overlapping notes, 7/8 and
5/4 bars, a tempo change every beat) and malformed ones written byte by byte with `struct` so the exact corruption is
known (truncations, flipped bytes in headers and chunks, wrong chunk lengths, empty files, text and PNG files named
`.mid`), with hostile file names (spaces, unicode, `..` inside names, very long names, leading dashes) and exact
duplicates. The same seed gives the same files, byte for byte.

Every file ends in `.mid`. Pass `kinds={}` to learn the kind of each written file (for debugging a failure); it is
never written into the corpus.
"""
from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Callable, Sequence

COMPOSERS = ["Bach", "Beethoven", "Chopin", "Debussy", "Dvořák", "Schumann, Robert", "Mozart"]

# ----------------------------------------------------------------------------------------------- raw MIDI encoding


def vlq(n: int) -> bytes:
    """MIDI variable-length quantity (7 bits a byte, high bit = more follows)."""
    if n < 0:
        raise ValueError(n)
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def chunk(tag: bytes, data: bytes, length: int | None = None) -> bytes:
    return tag + struct.pack(">I", len(data) if length is None else length) + data


def header(fmt: int, ntrks: int, division: int, length: int | None = None) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", fmt, ntrks, division), length)


def tempo_meta(bpm: float) -> bytes:
    us = max(1, min(0xFFFFFF, int(round(60_000_000 / bpm))))
    return b"\xff\x51\x03" + us.to_bytes(3, "big")


def time_sig_meta(num: int, den: int) -> bytes:
    return b"\xff\x58\x04" + bytes([num, den.bit_length() - 1, 24, 8])


def name_meta(name: str) -> bytes:
    data = name.encode("utf-8")
    return b"\xff\x03" + vlq(len(data)) + data


END_OF_TRACK = b"\xff\x2f\x00"


def track_bytes(events: Sequence[tuple[int, int, bytes]], end_delta: int = 0) -> bytes:
    """Events are (absolute tick, order, message bytes); sorted stably, turned into delta times, end-of-track added."""
    data = bytearray()
    now = 0
    for tick, _order, msg in sorted(events, key=lambda e: (e[0], e[1])):
        data += vlq(tick - now) + msg
        now = tick
    data += vlq(end_delta) + END_OF_TRACK
    return bytes(data)


def note_events(notes: Sequence[tuple[int, int, int, int]], channel: int = 0) -> list[tuple[int, int, bytes]]:
    """notes: (start, duration, pitch, velocity) -> note-on/note-off events (offs sort before ons at the same tick)."""
    ev = []
    for start, dur, pitch, vel in notes:
        ev.append((start, 1, bytes([0x90 | channel, pitch, vel])))
        ev.append((start + dur, 0, bytes([0x80 | channel, pitch, 0])))
    return ev


def midi_file(tracks: Sequence[bytes], fmt: int = 1, division: int = 480, ntrks: int | None = None) -> bytes:
    return header(fmt, len(tracks) if ntrks is None else ntrks, division) + b"".join(chunk(b"MTrk", t) for t in tracks)


def conductor(bpm: float = 120.0, ts: tuple[int, int] = (4, 4), extra: Sequence[tuple[int, int, bytes]] = ()) -> bytes:
    return track_bytes([(0, 0, tempo_meta(bpm)), (0, 0, time_sig_meta(*ts)), *extra])


def random_notes(rng: random.Random, tpq: int, n: int, beats_per_bar: float = 4.0,
                 pitch_range: tuple[int, int] = (36, 96)) -> list[tuple[int, int, int, int]]:
    notes = []
    t = 0
    for _ in range(n):
        t += rng.choice([0, 0, tpq // 4, tpq // 2, tpq, tpq])
        dur = rng.choice([tpq // 4, tpq // 2, tpq, 2 * tpq])
        notes.append((t, max(1, dur), rng.randint(*pitch_range), rng.randint(30, 110)))
    return notes


# ------------------------------------------------------------------------------------------------- file builders
# Each builder takes (rng, ctx) and returns bytes. ctx carries valid bytes to derive corruptions from.


class _Ctx:
    def __init__(self, sources: list[bytes]):
        self.valid: list[bytes] = []  # every valid file written so far (for duplicates and corruptions)
        self.sources = sources  # optional real files' bytes

    def base(self, rng: random.Random) -> bytes:
        pool = self.valid[-20:] + self.sources
        return rng.choice(pool) if pool else _valid_symusic(rng, self)


def _valid_symusic(rng: random.Random, ctx: _Ctx | None = None) -> bytes:
    """A plausible piano piece built with symusic (type 1, one or two tracks, 4/4 or 3/4)."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    tpq = rng.choice([96, 220, 384, 480, 960])
    score = Score(tpq)
    score.tempos.append(Tempo(0, float(rng.choice([60, 72, 96, 120, 144]))))
    num = rng.choice([3, 4])
    score.time_signatures.append(TimeSignature(0, num, 4))
    for hand, (lo, hi) in enumerate([(55, 96), (28, 60)][: rng.choice([1, 2])]):
        track = Track(name=["right", "left"][hand], program=0, is_drum=False)
        for start, dur, pitch, vel in random_notes(rng, tpq, rng.randint(40, 200), num, (lo, hi)):
            track.notes.append(Note(start, dur, pitch, vel))
        score.tracks.append(track)
    return bytes(score.dumps_midi())


def _valid_raw(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = rng.choice([120, 480])
    return midi_file([conductor(rng.choice([80, 100, 132])),
                      track_bytes(note_events(random_notes(rng, tpq, rng.randint(30, 150))))], division=tpq)


def _odd_meter(num: int, den: int) -> Callable[[random.Random, _Ctx], bytes]:
    def build(rng: random.Random, ctx: _Ctx) -> bytes:
        tpq = 480
        bar = tpq * 4 * num // den
        notes = []
        for b in range(rng.randint(8, 24)):
            for k in range(num):
                notes.append((b * bar + k * (bar // num), bar // num, rng.randint(48, 84), 90 if k == 0 else 60))
        return midi_file([conductor(112, (num, den)), track_bytes(note_events(notes))], division=tpq)
    return build


def _tempo_every_beat(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    n_beats = rng.randint(64, 256)
    tempos = [(b * tpq, 0, tempo_meta(rng.uniform(40, 200))) for b in range(n_beats)]
    notes = [(b * tpq, tpq // 2, rng.randint(40, 90), 80) for b in range(n_beats)]
    return midi_file([conductor(120, (4, 4), tempos[1:]), track_bytes(note_events(notes))], division=tpq)


def _zero_duration_notes(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    notes = [(i * tpq // 2, 0 if i % 2 else tpq // 2, rng.randint(40, 90), 70) for i in range(rng.randint(20, 80))]
    return midi_file([conductor(), track_bytes(note_events(notes))], division=tpq)


def _all_zero_duration(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    notes = [(i * tpq, 0, 60 + i % 12, 70) for i in range(30)]
    return midi_file([conductor(), track_bytes(note_events(notes))], division=tpq)


def _overlapping_notes(rng: random.Random, ctx: _Ctx) -> bytes:
    """The same pitch struck again before it was released, many times over, plus a note-on never released."""
    tpq = 480
    ev = []
    for i in range(rng.randint(20, 60)):
        ev.append((i * tpq // 4, 1, bytes([0x90, 60, 80])))  # on, on, on ...
        if i % 3 == 0:
            ev.append((i * tpq // 4 + tpq * 2, 0, bytes([0x80, 60, 0])))
    ev.append((0, 1, bytes([0x90, 72, 90])))  # never released
    return midi_file([conductor(), track_bytes(ev, end_delta=tpq * 4)], division=tpq)


def _drums_only(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    notes = [(i * tpq // 2, tpq // 4, rng.choice([35, 36, 38, 42, 46, 49]), 100) for i in range(rng.randint(32, 128))]
    return midi_file([conductor(), track_bytes(note_events(notes, channel=9))], division=tpq)


def _type2(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    tracks = []
    for _ in range(rng.randint(2, 4)):
        tracks.append(track_bytes([(0, 0, tempo_meta(rng.choice([90, 120]))),
                                   *note_events(random_notes(rng, tpq, rng.randint(10, 40)))]))
    return midi_file(tracks, fmt=2, division=tpq)


def _zero_tracks(rng: random.Random, ctx: _Ctx) -> bytes:
    return header(rng.choice([0, 1]), 0, 480)


def _empty_tracks(rng: random.Random, ctx: _Ctx) -> bytes:
    return midi_file([conductor(), track_bytes([]), track_bytes([(0, 0, name_meta("piano"))])])


def _hours_long(rng: random.Random, ctx: _Ctx) -> bytes:
    """Three hours at 120 bpm, one short note a bar, ~50 kB: a small file that decodes to a huge piece."""
    tpq = 96
    bars = 3 * 60 * 120 // 4  # 5400 bars of 4/4 at 120 bpm = 3 hours
    notes = [(b * 4 * tpq, tpq, 48 + (b * 7) % 36, 64) for b in range(bars)]
    return midi_file([conductor(120), track_bytes(note_events(notes))], division=tpq)


def _hours_of_silence(rng: random.Random, ctx: _Ctx) -> bytes:
    """Four notes an hour apart (slow tempo): tiny file, hours of empty bars."""
    tpq = 96
    hour = 3600 * 2 * tpq  # one hour of ticks at 120 bpm
    notes = [(k * hour, tpq, 60 + k, 80) for k in range(4)]
    return midi_file([conductor(120), track_bytes(note_events(notes))], division=tpq)


# --- malformed (raw bytes, exact corruption) ---


def _truncated(rng: random.Random, ctx: _Ctx) -> bytes:
    data = ctx.base(rng)
    cut = rng.choice([rng.randint(1, 13), rng.randint(14, 22), rng.randint(23, max(24, len(data) - 1))])
    return data[: min(cut, len(data) - 1)]


def _flipped_header(rng: random.Random, ctx: _Ctx) -> bytes:
    data = bytearray(ctx.base(rng))
    pos = rng.randint(0, 13)  # 'MThd', its length, format, ntrks, division
    data[pos] ^= 1 << rng.randint(0, 7)
    return bytes(data)


def _flipped_chunk(rng: random.Random, ctx: _Ctx) -> bytes:
    data = bytearray(ctx.base(rng))
    for _ in range(rng.randint(1, 8)):
        pos = rng.randint(14, len(data) - 1)
        data[pos] = rng.randint(0, 255)
    return bytes(data)


def _wrong_chunk_length(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    body = track_bytes(note_events(random_notes(rng, tpq, 40)))
    wrong = rng.choice([len(body) + rng.randint(1, 5000), max(0, len(body) - rng.randint(1, len(body))), 0xFFFFFFFF,
                        0])
    return header(1, 1, tpq) + chunk(b"MTrk", body, length=wrong)


def _wrong_header_length(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    body = track_bytes(note_events(random_notes(rng, tpq, 20)))
    return header(1, 1, tpq, length=rng.choice([0, 2, 7, 1 << 20])) + chunk(b"MTrk", body)


def _more_tracks_declared(rng: random.Random, ctx: _Ctx) -> bytes:
    tpq = 480
    return midi_file([track_bytes(note_events(random_notes(rng, tpq, 20)))], division=tpq,
                     ntrks=rng.choice([5, 0xFFFF]))


def _bad_division(rng: random.Random, ctx: _Ctx) -> bytes:
    """Division 0 (ticks per quarter = 0: a divide by zero waiting to happen) or a SMPTE timecode division."""
    body = track_bytes(note_events(random_notes(rng, 480, 20)))
    return header(0, 1, rng.choice([0, 0xE728, 0x8000])) + chunk(b"MTrk", body)


def _endless_vlq(rng: random.Random, ctx: _Ctx) -> bytes:
    """A delta time whose continuation bit never ends."""
    return header(0, 1, 480) + chunk(b"MTrk", b"\x00\x90\x3c\x40" + b"\xff" * rng.randint(8, 200))


def _no_status(rng: random.Random, ctx: _Ctx) -> bytes:
    """Running status with no status byte ever set: data bytes straight away."""
    return header(0, 1, 480) + chunk(b"MTrk", b"\x00\x3c\x40\x10\x3c\x00" + vlq(0) + END_OF_TRACK)


def _header_only(rng: random.Random, ctx: _Ctx) -> bytes:
    return header(1, rng.randint(1, 4), 480)


def _zero_length(rng: random.Random, ctx: _Ctx) -> bytes:
    return b""


def _text(rng: random.Random, ctx: _Ctx) -> bytes:
    return ("This is not a MIDI file.\nIt is a shopping list: eggs, milk, a metronome.\n" * rng.randint(1, 20)).encode()


def _png(rng: random.Random, ctx: _Ctx) -> bytes:
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\x00\x00\x00\x00"
            + bytes(rng.randint(0, 255) for _ in range(rng.randint(16, 512))))


def _garbage(rng: random.Random, ctx: _Ctx) -> bytes:
    return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 4096)))


def _mthd_then_garbage(rng: random.Random, ctx: _Ctx) -> bytes:
    return header(1, 2, 480) + bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 600)))


def _real_copy(rng: random.Random, ctx: _Ctx) -> bytes:
    return rng.choice(ctx.sources) if ctx.sources else _valid_symusic(rng, ctx)


VALID_KINDS: dict[str, Callable[[random.Random, _Ctx], bytes]] = {
    "valid": _valid_symusic,
    "valid_raw": _valid_raw,
    "real_copy": _real_copy,
}
ODD_KINDS: dict[str, Callable[[random.Random, _Ctx], bytes]] = {
    "meter_7_8": _odd_meter(7, 8),
    "meter_5_4": _odd_meter(5, 4),
    "tempo_every_beat": _tempo_every_beat,
    "zero_duration_notes": _zero_duration_notes,
    "all_zero_duration": _all_zero_duration,
    "overlapping_notes": _overlapping_notes,
    "drums_only": _drums_only,
    "type2": _type2,
    "zero_tracks": _zero_tracks,
    "empty_tracks": _empty_tracks,
    "hours_long": _hours_long,
    "hours_of_silence": _hours_of_silence,
}
BAD_KINDS: dict[str, Callable[[random.Random, _Ctx], bytes]] = {
    "truncated": _truncated,
    "flipped_header": _flipped_header,
    "flipped_chunk": _flipped_chunk,
    "wrong_chunk_length": _wrong_chunk_length,
    "wrong_header_length": _wrong_header_length,
    "more_tracks_declared": _more_tracks_declared,
    "bad_division": _bad_division,
    "endless_vlq": _endless_vlq,
    "no_status": _no_status,
    "header_only": _header_only,
    "zero_length": _zero_length,
    "text": _text,
    "png": _png,
    "garbage": _garbage,
    "mthd_then_garbage": _mthd_then_garbage,
}
KINDS = {**VALID_KINDS, **ODD_KINDS, **BAD_KINDS, "duplicate": None}
# Kinds that are expensive to tokenize: at most this many of each per corpus.
RARE = {"hours_long": 1, "hours_of_silence": 1}

# ------------------------------------------------------------------------------------------------------- names


def _name(rng: random.Random, i: int) -> str:
    """A file name (without folder), hostile one time in three. Unique per i."""
    style = rng.randrange(12)
    if style == 0:
        return f"with  spaces {i} (live).mid"
    if style == 1:
        return f"Étude nº{i} — 夜想曲 ♯.mid"
    if style == 2:
        return f"a..b..{i}...mid"
    if style == 3:
        return "L" * 180 + f"_{i}.mid"  # long name; stays below the 255-byte limit of most file systems
    if style == 4:
        return f"-rf --help {i}.mid"
    if style == 5:
        return f"--{i}.mid"
    return f"piece_{i:04d}.mid"


def _folder(rng: random.Random, composer: str) -> str:
    sub = rng.choice(["", "", "", "Op. 10", "sub/deeper", "..dots..", " lead space"])
    return f"{composer}/{sub}" if sub else composer


# ---------------------------------------------------------------------------------------------------- corpus


def make_fuzz_corpus(out_dir: str | Path, n: int, seed: int,
                     valid_sources: Sequence[str | Path] | None = None,
                     kinds: dict[Path, str] | None = None) -> list[Path]:
    """Write `n` files under `out_dir/<Composer>/...` and return their paths in writing order.

    Roughly 40% valid pieces, 20% legal-but-odd ones, 30% malformed and 10% exact duplicates; every kind in KINDS
    occurs at least once when n >= len(KINDS). `valid_sources` (optional real .mid files) are copied and corrupted
    too. Same (n, seed, valid_sources) -> the same files, byte for byte.
    """
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    sources = [Path(p).read_bytes() for p in sorted(map(str, valid_sources or []))]
    ctx = _Ctx(sources)
    kinds_first = [k for k in KINDS if k != "duplicate"] + ["duplicate"]
    counts: dict[str, int] = {}
    written: list[Path] = []
    used: set[str] = set()
    # Two names that differ only in case, and the same file name in two sub-folders of one composer.
    collisions = [("Bach", "Collision.mid"), ("Bach", "collision.mid"), ("Bach/x", "same.mid"), ("Bach/y", "same.mid")]
    for i in range(n):
        if i < len(kinds_first):
            kind = kinds_first[i]
        else:
            roll = rng.random()
            group = VALID_KINDS if roll < 0.4 else ODD_KINDS if roll < 0.6 else BAD_KINDS if roll < 0.9 else None
            kind = rng.choice(list(group)) if group is not None else "duplicate"
            while kind in RARE and counts.get(kind, 0) >= RARE[kind]:
                kind = rng.choice(list(VALID_KINDS))
        if kind == "duplicate":
            data = rng.choice(ctx.valid) if ctx.valid else _valid_symusic(rng, ctx)
        else:
            data = KINDS[kind](rng, ctx)
        if kind in VALID_KINDS:
            ctx.valid.append(data)
        counts[kind] = counts.get(kind, 0) + 1
        if i < len(collisions):
            folder, name = collisions[i]
        else:
            folder, name = _folder(rng, rng.choice(COMPOSERS)), _name(rng, i)
        rel = f"{folder}/{name}"
        assert rel not in used, rel
        used.add(rel)
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
        if kinds is not None:
            kinds[path] = kind
    return written


def make_valid_corpus(out_dir: str | Path, composers: Sequence[str], per_composer: int, seed: int,
                      n_notes: tuple[int, int] = (150, 400)) -> list[Path]:
    """A clean corpus: `per_composer` distinct valid pieces (symusic) in `out_dir/<Composer>/piece_<k>.mid`."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    out_dir = Path(out_dir)
    rng = random.Random(seed)
    written = []
    for composer in composers:
        for k in range(per_composer):
            tpq = 480
            score = Score(tpq)
            score.tempos.append(Tempo(0, float(rng.choice([72, 96, 120]))))
            score.time_signatures.append(TimeSignature(0, rng.choice([3, 4]), 4))
            for lo, hi in [(55, 96), (28, 60)]:
                track = Track(name="piano", program=0, is_drum=False)
                for start, dur, pitch, vel in random_notes(rng, tpq, rng.randint(*n_notes), 4, (lo, hi)):
                    track.notes.append(Note(start, dur, pitch, vel))
                score.tracks.append(track)
            path = out_dir / composer / f"piece_{k:02d}.mid"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(score.dumps_midi()))
            written.append(path)
    return written
