"""Stage `sample`: models/final -> data/samples/ (MIDI + manifest.json) and metrics/sample.json."""
from __future__ import annotations

from _common import REPO_ROOT, configs, load_params, run


def main() -> None:
    from mozart.infra import tracking
    from mozart.infra.atomic import write_json
    from mozart.generation.sample_stage import run_sample

    seed, (cfg,) = configs("sample")
    samples_dir = REPO_ROOT / "data" / "samples"
    metrics_path = REPO_ROOT / "metrics" / "sample.json"
    with tracking.stage_run("sample", load_params(), REPO_ROOT) as mlrun:
        metrics = run_sample(cfg, seed, model_dir=REPO_ROOT / "models" / "final",
                             prepared_dir=REPO_ROOT / "data" / "prepared", tokens_dir=REPO_ROOT / "data" / "tokens",
                             samples_dir=samples_dir)
        write_json(metrics_path, metrics)
        mlrun.log_metrics({f"sample.{k}": v for k, v in metrics.items()})
        mlrun.log_artifacts(samples_dir, artifact_path="samples")  # MIDI + manifest.json
        mlrun.log_artifact(metrics_path)
    print(f"sample: {metrics['n_samples']} pieces, {metrics['tokens_per_s']:.0f} tokens/s, "
          f"decodable {metrics['decodable_fraction']:.0%}, mean {metrics['mean_bars']:.1f} bars -> {samples_dir}")


if __name__ == "__main__":
    run(main)
