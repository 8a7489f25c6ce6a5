"""The pipeline's plots as PNG images for the listening page, so they show offline (no Vega, no CDN).

`dvc plots show` draws the same data (dvc.yaml `plots:`) with Vega; its default page loads Vega from a CDN and is
blank on a machine without network (mozart/report/vega_template.py makes a local template for it). The listening
page instead embeds these images, drawn with matplotlib from the committed metrics:

- `figures/train_curve.png` from metrics/train_curve.tsv: train and validation loss against the step, with the
  learning rate on its own axis below;
- `figures/composers.png` from metrics/eval_composers.tsv: per composer, style accuracy with and without CFG and test
  bits per token.

A missing or empty TSV (a stage not run yet) gives no figure rather than an error.
"""
from __future__ import annotations

import math
from pathlib import Path

from mozart.infra.atomic import atomic_path

FIGURES_DIR = "figures"
TRAIN_CURVE = "train_curve.png"
COMPOSERS = "composers.png"
LOSS_COLORS = ("#2a7f62", "#d9822b")  # unlike the piano roll's NOTE_COLOR, which the screenshot test counts


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    out = []
    for row in rows:
        try:
            out.append(float(row.get(key) or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def render_train_curve(rows: list[dict[str, str]], png_path: Path) -> None:
    """Loss curves (and the learning rate) against the training step."""
    plt = _pyplot()
    steps = _floats(rows, "step")
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 4.5), dpi=100, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    try:
        for key, color in zip(("train_loss", "val_loss"), LOSS_COLORS):
            values = _floats(rows, key)
            if any(not math.isnan(v) for v in values):
                loss_ax.plot(steps, values, marker="o", ms=3, color=color, label=key.replace("_", " "))
        loss_ax.set_ylabel("loss (nats/token)")
        loss_ax.legend(frameon=False)
        loss_ax.grid(alpha=0.3)
        loss_ax.set_title("Training curve (metrics/train_curve.tsv)")
        lr_ax.plot(steps, _floats(rows, "lr"), color="#555")
        lr_ax.set_ylabel("lr")
        lr_ax.set_xlabel("step")
        lr_ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def render_composer_figure(rows: list[dict[str, str]], png_path: Path) -> None:
    """Per composer: style accuracy (CFG, no CFG) and test bits per token, as horizontal bars."""
    plt = _pyplot()
    names = [r.get("composer", "") for r in rows]
    y = list(range(len(names)))
    height = max(2.5, 0.35 * len(names) + 1.2)
    fig, (style_ax, bits_ax) = plt.subplots(1, 2, figsize=(10, height), dpi=100, sharey=True)
    try:
        for offset, key, color, label in ((-0.2, "style_accuracy", LOSS_COLORS[0], "with CFG"),
                                          (0.2, "style_accuracy_nocfg", LOSS_COLORS[1], "without CFG")):
            values = [0.0 if math.isnan(v) else v for v in _floats(rows, key)]
            style_ax.barh([i + offset for i in y], values, height=0.38, color=color, label=label)
        style_ax.set_xlim(0, 1)
        style_ax.set_xlabel("style accuracy (classifier names the composer)")
        style_ax.legend(frameon=False, fontsize=8)
        bits = [0.0 if math.isnan(v) else v for v in _floats(rows, "test_bits_per_token")]
        bits_ax.barh(y, bits, color="#5a9c5a")
        bits_ax.set_xlabel("test bits per token (lower is better)")
        style_ax.set_yticks(y, names)
        style_ax.invert_yaxis()
        for ax in (style_ax, bits_ax):
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle("Per composer (metrics/eval_composers.tsv)")
        fig.tight_layout()
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def render_figures(metrics_dir: str | Path, reports_dir: str | Path) -> list[tuple[str, str]]:
    """Draw every figure whose metrics exist into reports_dir/figures/; (caption, path relative to reports_dir)."""
    from mozart.report.page import read_tsv

    metrics_dir, out = Path(metrics_dir), Path(reports_dir) / FIGURES_DIR
    figures = []
    for tsv, name, draw, caption in (
            ("train_curve.tsv", TRAIN_CURVE, render_train_curve, "Training curve: loss and learning rate"),
            ("eval_composers.tsv", COMPOSERS, render_composer_figure, "Per composer: style adherence and test "
                                                                        "bits per token")):
        rows = read_tsv(metrics_dir / tsv)
        if rows:
            out.mkdir(parents=True, exist_ok=True)
            draw(rows, out / name)
            figures.append((caption, f"{FIGURES_DIR}/{name}"))
    return figures
