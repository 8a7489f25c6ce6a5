"""`mozart serve`: argparse and start-up around the web app (mozart.serve.app)."""
from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
import tempfile
from pathlib import Path

from mozart.errors import ConfigError
from mozart.generation.engine import DEFAULT_MODEL_DIR

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
EXAMPLES = """examples:
  mozart serve                                  # http://127.0.0.1:8000/ on models/final
  mozart serve --model models/final --port 8080
  mozart serve --out generated/                 # keep every generated piece (default: a temporary folder)

In the page: pick a composer or a blend ("chopin:0.7,debussy:0.3"), the length in bars or seconds, BPM, CFG scale,
temperature and seed, optionally a MIDI file to continue; Generate shows progress, then plays the piece (FluidSynth
WAV), shows its piano roll and offers MIDI and WAV downloads. One piece is generated at a time; a second request
while one runs gets a "busy" answer. Ctrl-C stops the server.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLES
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory to generate with (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; anything else makes the "
                        "page, which has no login, reachable from the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 = any free port, printed at start)")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the generated pieces (MIDI, WAV, piano roll; one subfolder per piece); the only "
                        "folder the app serves files from (default: a temporary folder, removed on exit)")
    p.add_argument("--soundfont", default="/usr/share/sounds/sf2/FluidR3_GM.sf2", metavar="SF2",
                   help="General MIDI soundfont for the WAV (default: Debian's fluid-soundfont-gm)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8", "int4"),
                   help="inference weights, as for `mozart generate` (default auto: int4 on a CPU, fp32 on a GPU)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from mozart.generation.engine import load_model_dir
    from mozart.serve.app import create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {args.port}")
    lm = load_model_dir(args.model, args.device, precision=args.precision)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mozart-serve-"))
    try:
        try:
            server = make_server(args.host, args.port, create_app(lm, out_dir, args.soundfont), threaded=True)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}): pick another --port, "
                              "or 0 for any free one") from None
        if not _is_loopback(args.host):
            print(f"warning: listening on {args.host}: anyone who can reach this machine can use the page",
                  file=sys.stderr)
        print(f"mozart serve: http://{args.host}:{server.server_port}/ (model {lm.model_dir}, {lm.device} "
              f"{lm.precision}; pieces in {out_dir}); Ctrl-C stops", flush=True)
        server.serve_forever()  # werkzeug catches the KeyboardInterrupt of Ctrl-C and closes the socket
        print("mozart serve: stopped", flush=True)
        return 0
    finally:
        if not args.out:
            shutil.rmtree(out_dir, ignore_errors=True)
