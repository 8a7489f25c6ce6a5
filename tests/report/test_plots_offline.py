"""Plots that show without a network: the listening page's figure images (training curve, per composer), and
`dvc plots show` through the local Vega template that scripts/setup.sh builds from the npm packages — both checked
in headless Chromium with the network switched off."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from browser_helpers import CHROMIUM, Browser
from mozart.errors import MozartError
from mozart.report.figures import render_figures
from mozart.report.page import build_report
from mozart.report.vega_template import PACKAGES, build_template
from render_helpers import Elements, make_fixture

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_TEMPLATE = REPO_ROOT / ".dvc" / "tmp" / "plots-offline.html"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")


def _offline(browser: Browser) -> None:
    browser.call("Network.enable")
    browser.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1})


def test_figures_are_drawn_from_the_metrics_and_missing_ones_are_skipped(tmp_path):
    import matplotlib.image as mpimg

    fx = make_fixture(tmp_path / "site")
    figures = render_figures(fx["metrics_dir"], tmp_path / "out")
    assert [path for _, path in figures] == ["figures/train_curve.png", "figures/composers.png"]
    for _, path in figures:
        img = mpimg.imread(str(tmp_path / "out" / path))[..., :3]
        assert float(img.std()) > 0.05  # axes, bars and curves, not a blank canvas
    (fx["metrics_dir"] / "train_curve.tsv").unlink()
    assert [path for _, path in render_figures(fx["metrics_dir"], tmp_path / "out2")] == ["figures/composers.png"]


def test_the_listening_page_embeds_the_figures_as_images(tmp_path):
    fx = make_fixture(tmp_path / "site")
    reports = tmp_path / "reports"
    figures = render_figures(fx["metrics_dir"], reports)
    page = build_report(fx["samples_dir"], reports, {}, None, None, None, figures=figures)
    dom = Elements()
    dom.feed(page.read_text())
    srcs = [a.get("src") for t, a in dom.tags if t == "img"]
    assert "figures/train_curve.png" in srcs and "figures/composers.png" in srcs


def test_the_template_inlines_the_vega_scripts_and_keeps_dvcs_placeholder(tmp_path):
    for package in PACKAGES:
        build = tmp_path / "node_modules" / package / "build"
        build.mkdir(parents=True)
        (build / f"{package}.min.js").write_text(f"window['{package}'] = '</script>';")
    page = build_template(tmp_path / "node_modules", tmp_path / "t.html").read_text()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page and "http" not in page
    assert page.index("window['vega']") < page.index("window['vega-lite']") < page.index("window['vega-embed']")
    assert "'<\\/script>'" in page and page.count("</script>") == 3  # a script cannot close its own tag early
    (tmp_path / "node_modules" / "vega-embed" / "build" / "vega-embed.min.js").unlink()
    with pytest.raises(MozartError, match="npm install"):
        build_template(tmp_path / "node_modules", tmp_path / "t2.html")


@needs_chromium
def test_the_listening_page_figures_load_offline_in_the_browser(tmp_path):
    from mozart.report.render import render_reports
    from render_helpers import SOUNDFONT, render_cfg

    if not SOUNDFONT.is_file():
        pytest.skip(f"{SOUNDFONT} is not installed")
    fx = make_fixture(tmp_path / "site")
    render_reports(fx["samples_dir"], fx["metrics_dir"], fx["reports_dir"], render_cfg(), n_jobs=1, progress=False)
    with Browser() as browser:
        _offline(browser)
        browser.goto((fx["reports_dir"] / "index.html").resolve().as_uri())
        sizes = browser.wait_for("(() => { const imgs = [...document.querySelectorAll('img.figure')]; return "
                                 "imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0) && "
                                 "imgs.map(i => [i.naturalWidth, i.naturalHeight]); })()", timeout_s=30)
    assert sizes[0] == [800, 450] and sizes[1][0] == 1000  # train curve 8x4.5 in, composers 10 in wide, at 100 dpi


@needs_chromium
@pytest.mark.skipif(not SETUP_TEMPLATE.is_file(), reason=f"{SETUP_TEMPLATE} is absent: run scripts/setup.sh (it "
                                                          "installs the Vega scripts from npm)")
def test_dvc_plots_show_renders_offline_with_the_local_template(tmp_path):
    out = tmp_path / "plots"
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(SETUP_TEMPLATE),
                           "-o", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr" not in page
    with Browser() as browser:
        _offline(browser)
        browser.goto((out / "index.html").as_uri())
        n_charts = browser.wait_for("document.querySelectorAll('.vega-embed canvas').length", timeout_s=60)
        # the loss chart drew something: count the canvas pixels that are not transparent
        inked = browser.eval("(() => { const c = document.querySelector('.vega-embed canvas'); const d = "
                             "c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; "
                             "for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) n++; } return n; })()")
    assert n_charts >= 4  # loss, learning rate, per-composer style and bits per token (dvc.yaml plots:)
    assert inked > 5000, f"only {inked} drawn pixels on the first chart"
