"""Stage music21 (named export_music21.py so it never shadows the `music21` package, which Python would import from
this folder): the corpus embedded in the music21 package -> data/music21 (MIDI + works.json), the default
organize.source. When organize.source names another folder it writes an empty export in a second."""
from __future__ import annotations

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    _seed, (cfg,) = configs("organize")
    from mozart.data.music21_export import run as export
    from mozart.paths import Music21Paths

    paths = Music21Paths.under(REPO_ROOT)
    metrics = export(cfg, None, paths)  # deterministic: draws no random numbers
    log_stage("music21", metrics, "music21.")
    used = "" if metrics["used"] else " (not used: organize.source names another folder)"
    print(f"music21: {metrics['converted']} of {metrics['works']} works exported -> {paths.export_dir}{used}")


if __name__ == "__main__":
    run(main)
