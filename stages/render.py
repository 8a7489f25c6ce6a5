"""render stage: every sample's WAV and piano roll plus a listening page -> reports/ (index.html, audio/, rolls/)."""
from __future__ import annotations

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    _seed, (cfg,) = configs("render")
    from mozart.paths import RenderPaths
    from mozart.report.render import run as render

    paths = RenderPaths.under(REPO_ROOT)
    summary = render(cfg, None, paths)  # deterministic: draws no random numbers
    log_stage("render", {"n_samples": summary["n_samples"], "audio_seconds": summary["audio_seconds"],
                         "silent_samples": len(summary["silent"])}, "render.", folders=[(paths.reports_dir, "reports")])
    silent = f", {len(summary['silent'])} silent" if summary["silent"] else ""
    print(f"render: {summary['n_samples']} samples, {summary['audio_seconds'] / 60:.1f} min of audio{silent} in "
          f"{summary['wall_seconds']:.1f} s -> {summary['index']}")


if __name__ == "__main__":
    run(main)
