"""mozart.report.page: the listening page (build_report) and its checked input readers."""
from __future__ import annotations

import html
import json

import pytest

from mozart.errors import MozartError
from mozart.report.page import build_report, load_manifest, read_tsv
from render_helpers import EVAL, HOSTILE, SAMPLE_METRICS, TRAIN, make_fixture, parse, sample_record, write_midi


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


def test_same_inputs_give_the_same_page_bytes(tmp_path):
    fx = make_fixture(tmp_path)
    first = _build(fx)
    second = _build(fx)
    assert first == second  # no timestamp or other run-dependent text: reports/ is reproducible for DVC
    assert _build(fx, eval_metrics={**EVAL, "style_accuracy_cfg": 0.5}) != first


def _copy_row(sample: str, copied_bars: int, train_piece: str = "Bach/bwv-846") -> dict:
    return {"sample": sample, "copied_bars": str(copied_bars), "train_piece": train_piece, "train_bar": "3"}


def _card(html_text: str, sid: str) -> str:
    return html_text.split(f'id="s-{sid}"')[1].split("</article>")[0]


def test_a_sample_copying_four_or_more_bars_gets_a_badge_and_two_a_milder_note(tmp_path):
    fx = make_fixture(tmp_path)
    records = [sample_record(f"s{i}", "Bach", 1) for i in range(4)]
    for r in records:
        write_midi(fx["samples_dir"] / r["path"], [(0, 1, 60)])
    (fx["samples_dir"] / "manifest.json").write_text(json.dumps({"settings": {}, "samples": records}))
    rows = [_copy_row("s0", 6), _copy_row("s1", 4, HOSTILE), _copy_row("s2", 2), _copy_row("s3", 1)]
    html_text = _build(fx, copies_rows=rows)
    badges = [_card(html_text, sid).count('class="badge copied"') for sid in ("s0", "s1", "s2", "s3")]
    assert badges == [1, 1, 0, 0]
    assert "copies 6 bars of Bach/bwv-846" in " ".join(parse(_card(html_text, "s0")).text)
    assert HOSTILE not in html_text and html.escape(HOSTILE) in _card(html_text, "s1")  # piece ids are user data
    assert "Shares 2 consecutive bars with training piece Bach/bwv-846" in _card(html_text, "s2")
    assert "copie" not in _card(html_text, "s3").lower() and "shares" not in _card(html_text, "s3").lower()


def test_memorization_rates_are_in_the_summary_and_no_table_means_no_flags(tmp_path):
    fx = make_fixture(tmp_path)
    html_text = _build(fx)
    text = " ".join(parse(html_text).text)
    assert "Copying ≥ 4 training bars (generated / real)" in text
    assert "12.5% / 0.0%" in text and "25.0% / 5.9%" in text and "5 / 3" in text  # shares and longest copies
    assert 'class="badge copied"' not in html_text and "Shares" not in text
