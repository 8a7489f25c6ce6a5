"""Stage organize: organize.source (a MIDI folder; default data/music21) -> data/organized (<Composer>/*.mid,
manifest.parquet)."""
from __future__ import annotations

import time

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    _seed, (cfg,) = configs("organize")
    from mozart.data.organize import OrganizeSummary, run as organize
    from mozart.paths import OrganizePaths

    paths = OrganizePaths.under(REPO_ROOT)
    started = time.monotonic()
    metrics = organize(cfg, None, paths)  # deterministic: draws no random numbers
    log_stage("organize", metrics, "organize.", files=[(paths.organized_dir / "manifest.parquet", "organized")])
    summary = OrganizeSummary(**metrics).line(paths.organized_dir.relative_to(REPO_ROOT))
    print(f"{summary} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    run(main)
