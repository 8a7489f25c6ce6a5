"""Stage organize: organize.source (music21 corpus or a MIDI folder) -> data/organized (<Composer>/*.mid, manifest)."""
from __future__ import annotations

import dataclasses
import time

from _common import REPO_ROOT, configs, load_params, run


def main() -> None:
    from mozart.infra import tracking
    from mozart.config import resolve_source
    from mozart.data.organize import organize

    _seed, (cfg,) = configs("organize")
    out_dir = REPO_ROOT / "data" / "organized"
    started = time.monotonic()
    summary = organize(cfg, resolve_source(cfg.source, REPO_ROOT), out_dir)
    with tracking.stage_run("organize", load_params(), REPO_ROOT) as mlrun:
        mlrun.log_metrics({f"organize.{k}": v for k, v in dataclasses.asdict(summary).items()})
        mlrun.log_artifact(out_dir / "manifest.parquet", "organized")
    print(f"{summary.line(out_dir.relative_to(REPO_ROOT))} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    run(main)
