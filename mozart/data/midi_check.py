"""Reading one input MIDI file for organize: accept it (sha256, note count) or say in words why not.

`check_midi` runs in crash/hang-isolated workers (`mozart.infra.isolate`). RIFF `RMID` containers (`.rmi`-style
files: a RIFF header around a normal Standard MIDI File) are unwrapped and read as the MIDI file they hold.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path


def diagnose(data: bytes, error: BaseException | None = None) -> str:
    """Why `data` is not a usable Standard MIDI File, in words: walks the chunk structure the parser choked on."""
    if not data:
        return "empty file"
    if data[:4] != b"MThd":
        return "not a MIDI file (RIFF container)" if data[:4] == b"RIFF" else "not a MIDI file"
    if len(data) < 14:
        return "truncated header"
    header_len, _fmt, n_tracks, _division = struct.unpack(">IHHH", data[4:14])
    if n_tracks == 0:
        return "zero tracks"
    pos, found = 8 + header_len, 0
    while found < n_tracks:
        if pos + 8 > len(data):
            return f"truncated file ({found} of {n_tracks} track chunks)"
        (chunk_len,) = struct.unpack(">I", data[pos + 4:pos + 8])
        if pos + 8 + chunk_len > len(data):
            return "truncated track chunk"
        found += data[pos:pos + 4] == b"MTrk"
        pos += 8 + chunk_len
    message = " ".join(str(error).replace("MiniMidi:", "").replace(": iostream error", "").split()) if error else ""
    return f"parse error: {message}" if message else "parse error"


UNWRAPPED_REASON = "unwrapped from a RIFF (RMID) container"


def unwrap_riff(data: bytes) -> bytes | None:
    """The Standard MIDI File inside a RIFF `RMID` container (`.rmi`-style: RIFF, size, RMID, then chunks, one of
    them `data`), or None when `data` is not such a container or its payload is not MIDI."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"RMID":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, (size,) = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])
        if chunk_id == b"data":
            payload = data[pos + 8:pos + 8 + size]
            return payload if payload[:4] == b"MThd" else None
        pos += 8 + size + (size & 1)  # RIFF chunks are padded to an even length
    return None


def read_midi_bytes(path: Path) -> tuple[bytes, bool]:
    """(the MIDI bytes to use, whether they were unwrapped from a RIFF container)."""
    data = Path(path).read_bytes()
    payload = unwrap_riff(data)
    return (payload, True) if payload is not None else (data, False)


def check_midi(path: str) -> tuple[str, int, bool]:
    """(sha256, note count, unwrapped from RIFF) of a readable MIDI file with notes; raises `Rejected` with the
    reason otherwise. The hash is of the MIDI bytes, so a wrapped copy of a file is its duplicate. Runs in an
    isolated worker: the parser may crash or hang on hostile input."""
    from symusic import Score

    from mozart.infra.isolate import Rejected

    data, unwrapped = read_midi_bytes(Path(path))
    if not data or data[:4] != b"MThd":
        raise Rejected(diagnose(data))
    try:
        score = Score.from_midi(data)
    except Exception as exc:  # symusic raises RuntimeError for malformed files; say what is malformed
        raise Rejected(diagnose(data, exc)) from None
    if score.ticks_per_quarter <= 0:  # parses, but every tick -> time conversion would divide by zero
        raise Rejected("invalid MIDI header: time division is 0 ticks per quarter note")
    if score.note_num() == 0:  # symusic drops empty tracks, so ask the header whether there were any
        raise Rejected("zero tracks" if data[10:12] == b"\x00\x00" else "no notes")
    return hashlib.sha256(data).hexdigest(), score.note_num(), unwrapped


