"""`mozart evaluate FILE_OR_DIR...`: H1/H4/GS and the other metrics of mozart.evaluation.metrics per file and their
mean, as a table or (`--json`) one object `{"files": [...], "mean": {...}}`. torch is never imported, so it starts fast."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from mozart.errors import ConfigError
from mozart.evaluation.metrics import METRIC_KEYS, evaluate_files, find_midi_files, json_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR",
                        help="MIDI files, or folders searched recursively for .mid/.midi files")
    parser.add_argument("--grid", type=int, default=64, help="onset grid positions per bar for GS (default 64)")
    parser.add_argument("--time-signatures", action="store_true",
                        help="lay bars out from the files' time signatures (default: 4/4 from tick 0, as MusDr)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes (-1 = all cores; default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _cell(value, width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:.3f}".rjust(width)
    return str(value).rjust(width)


def format_table(result: dict) -> str:
    """A readable table: one line per file, then the mean over readable files; errors listed after."""
    headers = ("n_bars", "n_notes", "h1", "h4", "gs", "density", "range", "poly", "empty")
    keys = METRIC_KEYS
    paths = [r["path"] for r in result["files"]]
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if len(paths) > 1 else ""
    display = {p: os.path.relpath(os.path.abspath(p), root) if root else p for p in paths}
    paths = list(display.values())
    width = min(60, max([len("mean") + 12, *(len(p) for p in paths)]))
    line = lambda name, row: (name[-width:].ljust(width) + "".join(_cell(row.get(k), 9) for k in keys))  # noqa: E731
    out = ["file".ljust(width) + "".join(h.rjust(9) for h in headers)]
    good = [r for r in result["files"] if "error" not in r]
    bad = [r for r in result["files"] if "error" in r]
    out += [line(display[r["path"]], r) for r in good]
    out.append(line(f"mean ({len(good)} files)", result["mean"]))
    out += [f"unreadable: {r['path']}: {r['error']}" for r in bad]
    return "\n".join(out)


MAX_GRID = 1024  # onset positions per bar; MusDr uses 64


def _validate(args: argparse.Namespace) -> None:
    if not 1 <= args.grid <= MAX_GRID:
        raise ConfigError(f"--grid must be in 1..{MAX_GRID} onset positions per bar, got {args.grid}")
    if args.jobs == 0 or args.jobs < -1:
        raise ConfigError(f"--jobs must be a worker count >= 1, or -1 for all cores, got {args.jobs}")


def main(args: argparse.Namespace) -> int:
    _validate(args)
    files = find_midi_files(args.paths)
    result = evaluate_files(files, args.grid, args.time_signatures, args.jobs)
    n_ok = sum("error" not in r for r in result["files"])
    if args.json:
        print(json.dumps(json_safe(result), indent=2))
    else:
        print(format_table(result))
    for r in result["files"]:
        if "error" in r:
            print(f"mozart evaluate: skipped unreadable {r['path']}: {r['error']}", file=sys.stderr)
    if n_ok == 0:
        print(f"mozart evaluate: error: none of the {len(files)} files could be read as MIDI", file=sys.stderr)
        return 1
    return 0


