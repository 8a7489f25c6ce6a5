"""Stage prepare: organize + tokenize manifests -> data/prepared (composers.json, metadata.parquet), metrics/data.json."""
from __future__ import annotations

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    seed, (cfg,) = configs("prepare")
    from mozart.data.prepare import PrepareSummary, run as prepare
    from mozart.paths import PreparePaths

    paths = PreparePaths.under(REPO_ROOT)
    metrics = prepare(cfg, seed, paths)
    log_stage("prepare", metrics, "data.", files=[(paths.data_json, "metrics"),
                                                  (paths.prepared_dir / "composers.json", "prepared")])
    print(PrepareSummary(metrics).line())


if __name__ == "__main__":
    run(main)
