"""Stage organize: organize.source (music21 corpus or a MIDI folder) -> data/organized (<Composer>/*.mid, manifest)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

# stages/tokenize.py would shadow the standard library's tokenize (imported by pandas/music21 via inspect): import the
# stage plumbing as the `stages` package from the repository root instead of putting this folder on sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from stages._common import REPO_ROOT, configs, run  # noqa: E402


def main() -> None:
    from mozart.config import resolve_source
    from mozart.organize import organize

    _seed, (cfg,) = configs("organize")
    out_dir = REPO_ROOT / "data" / "organized"
    started = time.monotonic()
    summary = organize(cfg, resolve_source(cfg.source, REPO_ROOT), out_dir)
    print(f"{summary.line(out_dir.relative_to(REPO_ROOT))} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    run(main)
