"""evaluate stage: metrics of generated vs real music (structureness SI from audio rendered with render.soundfont),
test bits per token, memorization and the judged set (style accuracy, decodability, H1/H4/GS gaps per guidance
scale) -> metrics/eval.json (+ eval_composers.tsv, eval_judged.tsv, eval_copies.tsv), data/judged/."""
from __future__ import annotations

from _common import REPO_ROOT, configs, log_stage, run


def main() -> None:
    seed, (cfg, sample_cfg, render) = configs("evaluate", "sample", "render")
    from mozart.evaluation.stage import run as evaluate
    from mozart.paths import EvaluatePaths

    paths = EvaluatePaths.under(REPO_ROOT)
    result = evaluate(cfg, seed, paths, sample_cfg, render)
    log_stage("evaluate", result, "", files=[(paths.metrics_json, None), (paths.composers_tsv, None),
                                             (paths.judged_tsv, None), (paths.copies_tsv, None)],
              model_dir=paths.model_dir)
    gen, real = result["generated"], result["real"]
    print(f"evaluate: generated H1 {gen['h1']:.3f} H4 {gen['h4']:.3f} GS {gen['gs']:.3f} | real H1 {real['h1']:.3f} "
          f"H4 {real['h4']:.3f} GS {real['gs']:.3f} | test {result['test_bits_per_token']:.3f} bits/token | style "
          f"cfg {result['style_accuracy_cfg']:.2f} [{result['style_accuracy_cfg_ci_low']:.2f}, "
          f"{result['style_accuracy_cfg_ci_high']:.2f}] no-cfg {result['style_accuracy_nocfg']:.2f} "
          f"[{result['style_accuracy_nocfg_ci_low']:.2f}, {result['style_accuracy_nocfg_ci_high']:.2f}] "
          f"(n = {result['n_style_cfg']} each; real test {result['real_test_style_accuracy']:.2f}, "
          f"chance {result['style_chance']:.2f}) | copying >= 4 bars: generated {result['generated_copy4_share']:.2f}, "
          f"real test {result['real_copy4_share']:.2f}"
          + (f" | SI mid {result['si_mid']:.3f} (real {result['real_si_mid']:.3f})" if "si_mid" in result else ""))


if __name__ == "__main__":
    run(main)
