"""mozart.report: the listening page (build_report) and the render stage's library side (render_reports)."""
from __future__ import annotations

import html
import json
import shutil
import wave
from pathlib import Path

import pytest

from mozart.errors import MozartError
from mozart.report import build_report, load_manifest, read_tsv, render_reports
from render_helpers import (EVAL, HOSTILE, SAMPLE_METRICS, SOUNDFONT, TRAIN, make_fixture, parse, render_cfg,
                            sample_record, write_midi)

needs_soundfont = pytest.mark.skipif(not SOUNDFONT.is_file(), reason=f"{SOUNDFONT} is not installed")


def _build(fx, **overrides) -> str:
    kwargs = dict(sample_metrics=SAMPLE_METRICS, eval_metrics=EVAL,
                  eval_composers_rows=read_tsv(fx["metrics_dir"] / "eval_composers.tsv"), train_metrics=TRAIN)
    kwargs.update(overrides)
    out = build_report(fx["samples_dir"], fx["reports_dir"], **kwargs)
    assert out == fx["reports_dir"] / "index.html"
    return out.read_text(encoding="utf-8")


def test_page_has_a_player_and_a_piano_roll_per_sample(tmp_path):
    fx = make_fixture(tmp_path)
    page = parse(_build(fx))
    audios = [a for t, a in page.tags if t == "audio"]
    imgs = [a for t, a in page.tags if t == "img"]
    assert sorted(a["src"] for a in audios) == sorted(f"audio/{i}.wav" for i in fx["ids"])
    assert all("controls" in a for a in audios)
    assert sorted(a["src"] for a in imgs) == sorted(f"rolls/{i}.png" for i in fx["ids"])
    text = " ".join(page.text)
    for record in fx["records"]:
        assert record["id"] in text
    assert "continuation" in text and "Bach/prelude-1" in text and "free" in text
    # no external resources: the page works from file:// with no network
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not str(attrs.get(key, "")).startswith(("http:", "https:", "//")), attrs
    assert not any(t in ("script", "link") for t, _ in page.tags)


def test_page_shows_eval_sample_train_and_per_composer_metrics(tmp_path):
    fx = make_fixture(tmp_path)
    text = " ".join(parse(_build(fx)).text)
    expected = {
        "generated h1/h4/gs": ["2.346", "2.877", "0.912"], "real h1/h4/gs": ["2.111", "2.722", "0.833"],
        "gaps": ["0.234", "0.154", "0.079"], "style cfg / no cfg / real / chance": ["62.5%", "37.5%", "81.2%", "11.1%"],
        "test bits per token": ["2.468"], "decodable fraction": ["87.5%"], "train val loss": ["1.495"],
        "sample.json tokens/s": ["1234.5"],
        "per-composer rows": ["2.314", "2.718", "75.0%", "25.0%"],
        "per-piece metrics of the continuation": ["1.877", "2.432", "0.778"],
    }
    for what, values in expected.items():
        for v in values:
            assert v in text, f"{what}: {v} missing from the page"


def test_hostile_composer_name_is_escaped(tmp_path):
    fx = make_fixture(tmp_path)
    html_text = _build(fx)
    assert "<script" not in html_text.lower()
    assert html.escape(HOSTILE) in html_text
    page = parse(html_text)
    assert not any(t == "script" for t, _ in page.tags)
    # it is still shown, as text: in the per-composer table, the sample group and the sample card
    assert " ".join(page.text).count(HOSTILE) >= 3


def test_hostile_values_in_attributes_are_escaped(tmp_path):
    fx = make_fixture(tmp_path)
    manifest = json.loads((fx["samples_dir"] / "manifest.json").read_text())
    manifest["samples"][0]["prompt_piece_id"] = '"><img src=x onerror=alert(1)>'
    manifest["samples"][0]["kind"] = "continuation"
    (fx["samples_dir"] / "manifest.json").write_text(json.dumps(manifest))
    page = parse(_build(fx))
    assert not any(t == "img" and a.get("src") == "x" for t, a in page.tags)
    assert not any("onerror" in a for _, a in page.tags)


def test_missing_and_nan_metrics_are_shown_as_dashes(tmp_path):
    fx = make_fixture(tmp_path, composer_tsv=False, train=False)
    gappy = json.loads(json.dumps(EVAL))
    gappy["style_accuracy_cfg"] = None   # json_safe writes NaN as null
    gappy["real"]["h1"] = float("nan")
    text = " ".join(parse(_build(fx, eval_metrics=gappy, eval_composers_rows=None, train_metrics=None)).text)
    assert "nan" not in text.lower()
    assert "—" in text and "eval_composers.tsv is absent" in text
    assert "Validation loss" not in text

    # no eval at all still lists the samples with players
    page = parse(_build(fx, eval_metrics=None, eval_composers_rows=None, train_metrics=None, sample_metrics={}))
    assert len([t for t, _ in page.tags if t == "audio"]) == len(fx["ids"])


def test_samples_are_grouped_by_composer(tmp_path):
    fx = make_fixture(tmp_path)
    records = [sample_record(f"s{i}", name, cid) for i, (name, cid) in
               enumerate([("Bach", 1), ("Chopin", 2), ("Bach", 1), ("unconditional", 0)])]
    for r in records:
        write_midi(fx["samples_dir"] / r["path"], [(0, 1, 60)])
    (fx["samples_dir"] / "manifest.json").write_text(json.dumps({"settings": {}, "samples": records}))
    html_text = _build(fx)
    sections = html_text.split('<section class="composer"')[1:]
    assert len(sections) == 3
    assert "s0" in sections[0] and "s2" in sections[0] and "Bach" in sections[0]
    assert "s1" in sections[1] and "Chopin" in sections[1] and "s3" in sections[2]


def test_unsafe_sample_ids_are_rejected(tmp_path):
    fx = make_fixture(tmp_path)
    manifest = json.loads((fx["samples_dir"] / "manifest.json").read_text())
    manifest["samples"][0]["id"] = "../../etc/evil"
    (fx["samples_dir"] / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MozartError, match="evil"):
        load_manifest(fx["samples_dir"])


# ------------------------------------------------------------------------------------------ render_reports (stage)

def _wav_rms(path: Path) -> float:
    import numpy as np

    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(data ** 2)))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".reports"))


@needs_soundfont
def test_render_reports_writes_page_audio_and_rolls(tmp_path):
    fx = make_fixture(tmp_path)
    reports = fx["reports_dir"]
    reports.mkdir()
    (reports / "stale.txt").write_text("from an earlier run")
    summary = render_reports(fx["samples_dir"], fx["metrics_dir"], reports, render_cfg(), n_jobs=2, progress=False)

    assert summary["n_samples"] == 2 and summary["silent"] == []
    assert summary["audio_seconds"] == pytest.approx((4 + 1.5) + (4 + 1.5), abs=0.1)  # 2 bars each + tails
    assert not (reports / "stale.txt").exists()  # the folder was replaced whole
    assert sorted(p.name for p in (reports / "audio").iterdir()) == sorted(f"{i}.wav" for i in fx["ids"])
    assert sorted(p.name for p in (reports / "rolls").iterdir()) == sorted(f"{i}.png" for i in fx["ids"])
    for i in fx["ids"]:
        assert _wav_rms(reports / "audio" / f"{i}.wav") > 0.005
        assert (reports / "rolls" / f"{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = parse((reports / "index.html").read_text(encoding="utf-8"))
    srcs = [a["src"] for t, a in page.tags if t in ("audio", "img")]
    assert len(srcs) == 4 and all((reports / s).is_file() for s in srcs)  # every reference resolves on disk
    assert "62.5%" in " ".join(page.text) and "2.718" in " ".join(page.text)
    assert _leftovers(tmp_path) == []


@needs_soundfont
def test_missing_soundfont_leaves_the_old_report(tmp_path):
    fx = make_fixture(tmp_path)
    reports = fx["reports_dir"]
    (reports / "audio").mkdir(parents=True)
    (reports / "index.html").write_text("<p>earlier report</p>")
    missing = tmp_path / "no" / "Grand.sf2"
    with pytest.raises(MozartError) as err:
        render_reports(fx["samples_dir"], fx["metrics_dir"], reports, render_cfg(missing), progress=False)
    assert str(missing) in str(err.value)
    assert (reports / "index.html").read_text() == "<p>earlier report</p>"
    assert sorted(p.name for p in reports.iterdir()) == ["audio", "index.html"]
    assert _leftovers(tmp_path) == []


@needs_soundfont
def test_failure_midway_leaves_the_old_report(tmp_path):
    fx = make_fixture(tmp_path)
    reports = fx["reports_dir"]
    reports.mkdir()
    (reports / "index.html").write_text("<p>earlier report</p>")
    # the second sample's MIDI is corrupt: the first one renders, then the stage fails
    (fx["samples_dir"] / fx["records"][1]["path"]).write_bytes(b"MThd this is not a MIDI file")
    with pytest.raises(MozartError, match="cannot read MIDI"):
        render_reports(fx["samples_dir"], fx["metrics_dir"], reports, render_cfg(), n_jobs=1, progress=False)
    assert sorted(p.name for p in reports.iterdir()) == ["index.html"]
    assert (reports / "index.html").read_text() == "<p>earlier report</p>"
    assert _leftovers(tmp_path) == []


@needs_soundfont
@pytest.mark.parametrize("remove, needle", [("metrics/eval.json", "eval.json"),
                                            ("metrics/sample.json", "sample.json"),
                                            ("data/samples/manifest.json", "manifest.json"),
                                            ("data/samples/free-01-bach-cfg1.5-1.mid", "free-01-bach-cfg1.5-1.mid")])
def test_missing_inputs_are_clear_errors(tmp_path, remove, needle):
    fx = make_fixture(tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(MozartError) as err:
        render_reports(fx["samples_dir"], fx["metrics_dir"], fx["reports_dir"], render_cfg(), progress=False)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not fx["reports_dir"].exists() and _leftovers(tmp_path) == []


@needs_soundfont
def test_optional_inputs_may_be_absent(tmp_path):
    fx = make_fixture(tmp_path, composer_tsv=False, train=False)
    render_reports(fx["samples_dir"], fx["metrics_dir"], fx["reports_dir"], render_cfg(), n_jobs=1, progress=False)
    text = (fx["reports_dir"] / "index.html").read_text(encoding="utf-8")
    assert "eval_composers.tsv is absent" in text and "2.346" in text


@needs_soundfont
def test_render_stage_script(tmp_path):
    from stage_helpers import assert_one_line_error, make_repo_copy, run_stage

    root = make_repo_copy(tmp_path / "repo", {"render.sample_rate": 22050})
    make_fixture(root)
    proc = run_stage(root, "render", timeout=120, check=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("render:")]
    assert len(lines) == 1 and "2 samples" in lines[0], proc.stdout
    assert (root / "reports" / "index.html").is_file()
    assert len(list((root / "reports" / "audio").glob("*.wav"))) == 2
    assert len(list((root / "reports" / "rolls").glob("*.png"))) == 2

    shutil.rmtree(root / "data" / "samples")
    proc = run_stage(root, "render", timeout=120)
    assert_one_line_error(proc, "manifest.json")
    assert (root / "reports" / "index.html").is_file()  # the earlier report survives the failed run
