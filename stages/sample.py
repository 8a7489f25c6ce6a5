"""Stage `sample`: models/final -> data/samples/ (MIDI + manifest.json) and metrics/sample.json."""
from __future__ import annotations

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    seed, (cfg,) = configs("sample")
    from mozart.generation.sample_stage import run as sample
    from mozart.paths import SamplePaths

    paths = SamplePaths.under(REPO_ROOT)
    metrics = sample(cfg, seed, paths)
    log_stage("sample", metrics, "sample.", files=[(paths.metrics_json, None)],
              folders=[(paths.samples_dir, "samples")])  # MIDI + manifest.json
    print(f"sample: {metrics['n_samples']} pieces, {metrics['tokens_per_s']:.0f} tokens/s, "
          f"decodable {metrics['decodable_fraction']:.0%}, mean {metrics['mean_bars']:.1f} bars -> {paths.samples_dir}")


if __name__ == "__main__":
    run(main)
