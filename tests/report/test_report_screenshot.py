"""The listening page in a real browser: headless Chromium opens reports/index.html from file://, its DOM holds the
players and piano rolls, and a screenshot shows a rendered page with the piano-roll notes on it."""
from __future__ import annotations

import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from mozart.report.render import NOTE_COLOR, render_reports
from render_helpers import HOSTILE, SOUNDFONT, Elements, make_fixture, render_cfg

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome",
                                                       "google-chrome-stable")) if p), None)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)"),
              pytest.mark.skipif(not SOUNDFONT.is_file(), reason=f"{SOUNDFONT} is not installed")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,1600"]


def _chromium(url: str, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="mozart-chromium-") as profile:  # a new empty profile per run
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True,
                              text=True, timeout=60)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    fx = make_fixture(tmp_path_factory.mktemp("site"))
    render_reports(fx["samples_dir"], fx["metrics_dir"], fx["reports_dir"], render_cfg(), n_jobs=1, progress=False)
    return fx


def test_dom_has_players_and_piano_rolls(report):
    index = report["reports_dir"] / "index.html"
    proc = _chromium(index.resolve().as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Elements()
    dom.feed(proc.stdout)
    audio = [a.get("src") for t, a in dom.tags if t == "audio"]
    imgs = [a.get("src") for t, a in dom.tags if t == "img"]
    assert sorted(audio) == sorted(f"audio/{i}.wav" for i in report["ids"])
    assert sorted(i for i in imgs if i.startswith("rolls/")) == sorted(f"rolls/{i}.png" for i in report["ids"])
    assert sorted(i for i in imgs if not i.startswith("rolls/")) == ["figures/composers.png",
                                                                     "figures/train_curve.png"]
    assert not any(t == "script" for t, _ in dom.tags)  # the hostile composer name stayed text
    assert HOSTILE in " ".join(dom.text)


def test_screenshot_shows_a_rendered_page_with_piano_rolls(report, tmp_path):
    import matplotlib.image as mpimg

    shot = tmp_path / "page.png"
    proc = _chromium((report["reports_dir"] / "index.html").resolve().as_uri(), f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    img = mpimg.imread(str(shot))[..., :3]
    assert img.shape[:2] == (1600, 1200)
    assert float(img.std()) > 0.08, "screenshot is (nearly) blank"
    # text and table lines: many distinct grey levels, not a flat colour
    assert len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    # the first piano roll loaded from rolls/ (file://) and is on screen: its note colour covers a visible area (the
    # page's own CSS uses no such colour, so a missing image would leave none)
    target = np.array([int(NOTE_COLOR[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    note_pixels = int((np.abs(img - target).max(axis=-1) < 0.06).sum())
    assert note_pixels > 2000, f"only {note_pixels} piano-roll note pixels on the screenshot"
