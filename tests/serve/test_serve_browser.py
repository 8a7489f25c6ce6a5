"""`mozart serve` in a real browser: headless Chromium loads the page from a server on a tiny random model, a user
types a composer blend and fills the form, clicks Generate, and gets a playable audio element, a piano roll and a
MIDI download that decodes. The screenshot after the generation is saved for the reader (docs/serve.png when
MOZART_SAVE_SCREENSHOT=1)."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import symusic

from browser_helpers import CHROMIUM, Browser
from mozart.report.render import NOTE_COLOR
from sampling_helpers import one_thread  # noqa: F401 (autouse fixture)
from serve_helpers import SOUNDFONT, serve_app

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)"),
              pytest.mark.skipif(not SOUNDFONT.is_file(), reason=f"{SOUNDFONT} is not installed")]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serve.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from werkzeug.serving import make_server

    app, out_dir = serve_app(tmp_path_factory.mktemp("serve-browser"))
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{srv.server_port}/", "out_dir": out_dir}
    srv.shutdown()
    thread.join(timeout=10)


def _type(browser: Browser, selector: str, text: str) -> None:
    """Focus a field, clear it and type `text` as keyboard input."""
    browser.eval(f"(() => {{ const e = document.querySelector({selector!r}); e.focus(); e.select(); }})()")
    browser.call("Input.insertText", {"text": text})


def _click(browser: Browser, selector: str) -> None:
    """A real mouse click in the middle of the element."""
    box = browser.eval(f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView(); "
                       "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                  "clickCount": 1})


def _wait_for_download(folder: Path, suffix: str, timeout_s: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [p for p in folder.glob(f"*{suffix}")]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} download in {folder} after {timeout_s} s: {list(folder.iterdir())}")


def test_generate_listen_look_and_download_in_the_browser(server, tmp_path):
    import matplotlib.image as mpimg

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with Browser() as browser:
        browser.goto(server["url"], ready="document.body && document.body.dataset.ready === '1'")
        assert browser.eval("document.querySelectorAll('#composers option').length") == 3
        _type(browser, "#composer", "bach:0.6,chopin:0.4")
        _type(browser, "#length", "3")
        _type(browser, "#bpm", "110")
        _type(browser, "#seed", "5")
        _type(browser, "#cfg", "1.5")
        _click(browser, "#generate")
        browser.wait_for("document.querySelector('#audio').readyState >= 1 && document.querySelector('#roll')"
                         ".complete && document.querySelector('#roll').naturalWidth > 0", timeout_s=180)
        assert browser.eval("document.querySelector('#error').textContent") == ""
        assert browser.eval("document.querySelector('#status').textContent") == "Done"
        assert browser.eval("document.querySelector('#audio').duration") > 1.0
        assert browser.eval("document.querySelector('#title').textContent") == \
            "Bach 60% + Chopin 40%: 3 bars at 110 BPM"
        browser.allow_downloads(downloads)
        _click(browser, "#download-midi")
        midi = _wait_for_download(downloads, ".mid")
        shot = tmp_path / "serve.png"
        browser.eval("window.scrollTo(0, 0)")
        shot.write_bytes(browser.screenshot())

    score = symusic.Score(str(midi))
    assert score.note_num() > 0
    served = next(server["out_dir"].glob("*/piece.mid"))
    assert midi.read_bytes() == served.read_bytes()

    img = mpimg.imread(str(shot))[..., :3]
    assert img.shape[:2] == (1600, 1200) and float(img.std()) > 0.08
    target = np.array([int(NOTE_COLOR[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    note_pixels = int((np.abs(img - target).max(axis=-1) < 0.06).sum())
    assert note_pixels > 500, f"only {note_pixels} piano-roll note pixels on the screenshot"
    if os.environ.get("MOZART_SAVE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_an_error_from_the_server_is_shown_on_the_page(server):
    with Browser() as browser:
        browser.goto(server["url"], ready="document.body && document.body.dataset.ready === '1'")
        _type(browser, "#length", "999")
        _click(browser, "#generate")
        message = browser.wait_for("document.querySelector('#error').textContent")
        assert message == "bars must be from 1 to 128, got 999"
        assert browser.eval("document.querySelector('#result').hidden") is True
