"""render stage: every sample's WAV and piano roll plus a listening page -> reports/ (index.html, audio/, rolls/)."""
from __future__ import annotations

from _common import REPO_ROOT, configs, load_params, run


def main() -> None:
    _, (cfg,) = configs("render")
    from mozart.infra import tracking
    from mozart.report.render import render_reports

    reports = REPO_ROOT / "reports"
    summary = render_reports(REPO_ROOT / "data" / "samples", REPO_ROOT / "metrics", reports, cfg)
    with tracking.stage_run("render", load_params(), REPO_ROOT) as mlrun:
        mlrun.log_metrics({"render.n_samples": summary["n_samples"], "render.audio_seconds": summary["audio_seconds"],
                           "render.silent_samples": len(summary["silent"])})
        mlrun.log_artifacts(reports, artifact_path="reports")
    silent = f", {len(summary['silent'])} silent" if summary["silent"] else ""
    print(f"render: {summary['n_samples']} samples, {summary['audio_seconds'] / 60:.1f} min of audio{silent} in "
          f"{summary['wall_seconds']:.1f} s -> {summary['index']}")


if __name__ == "__main__":
    run(main)
