"""The listening page `reports/index.html`, and the checked readers of the render stage's inputs.

`build_report` writes only `index.html`: one self-contained page (inline CSS, no JavaScript, no CDN) that works from
file:// — a summary of the sampling and evaluation metrics, the per-composer table, then every sample grouped by
composer with its settings, an audio player (`audio/<id>.wav`), its piano roll (`rolls/<id>.png`) and, when the
memorization check (metrics/eval_copies.tsv) found one, a flag for bars copied from a training piece. Every string
that reaches the page is HTML-escaped: composer names and piece ids are user data. The page carries no timestamp, so
the same inputs give the same bytes. The rendering itself (WAVs, rolls, the atomic swap) is `mozart.report.render`.
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from mozart.infra.atomic import read_json
from mozart.errors import DataError

AUDIO_DIR = "audio"
ROLLS_DIR = "rolls"
INDEX = "index.html"
SILENT_RMS = 1e-4  # a rendered sample quieter than this is reported as silent
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # ids become file names under audio/ and rolls/

# label, key in eval.json "generated"/"real"
_MUSIC_ROWS = (("Pitch-class entropy, 1 bar (H1)", "h1"), ("Pitch-class entropy, 4 bars (H4)", "h4"),
               ("Grooving similarity (GS)", "gs"), ("Note density (onsets/bar)", "note_density"),
               ("Pitch range (semitones)", "pitch_range"), ("Mean polyphony", "mean_polyphony"),
               ("Empty-bar fraction", "empty_bar_fraction"), ("Bars", "n_bars"), ("Pieces measured", "n_pieces"))
_SAMPLE_LABELS = {"n_samples": "Samples", "n_free": "Free samples", "n_continuations": "Continuations",
                  "tokens_per_s": "Generation speed (tokens/s)", "new_tokens": "Tokens generated",
                  "generation_seconds": "Generation time (s)", "decodable_fraction": "Decodable",
                  "mean_bars": "Mean bars", "mean_seconds": "Mean length (s)",
                  "reached_target_fraction": "Reached target length", "grammar": "Grammar-constrained"}
_PERCENT_KEYS = {"decodable_fraction", "reached_target_fraction", "style_accuracy", "style_accuracy_nocfg",
                 "style_accuracy_cfg", "real_test_style_accuracy", "style_chance", "style_majority_rate"}
COPY_FLAG_BARS, COPY_NOTE_BARS = 4, 2  # a sample copying this many consecutive training bars gets a badge / a note
_PIECE_LABELS = {"h1": "H1", "h4": "H4", "gs": "GS", "note_density": "Note density", "pitch_range": "Pitch range",
                 "mean_polyphony": "Polyphony", "empty_bar_fraction": "Empty bars", "n_notes": "Notes",
                 "n_bars": "Bars"}


# ----------------------------------------------------------------------------------------------------------- inputs

def read_tsv(path: str | Path) -> list[dict[str, str]] | None:
    """Rows of a tab-separated file with a header line as dicts of strings; None when the file does not exist."""
    if not Path(path).is_file():
        return None
    lines = [ln.split("\t") for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [{h: (cells[i] if i < len(cells) else "") for i, h in enumerate(lines[0])} for cells in lines[1:]]


def load_manifest(samples_dir: str | Path) -> list[dict]:
    """The samples of `samples_dir/manifest.json`, checked: a safe unique id and an existing MIDI file each."""
    samples_dir = Path(samples_dir)
    manifest = read_json(samples_dir / "manifest.json", "run the sample stage first (`dvc repro sample`)")
    samples = manifest.get("samples")
    if not isinstance(samples, list) or not samples:
        raise DataError(f"{samples_dir / 'manifest.json'} lists no samples: check the sample params and rerun "
                        "`dvc repro sample`")
    seen: set[str] = set()
    root = samples_dir.resolve()
    for i, s in enumerate(samples):
        sid = s.get("id") if isinstance(s, dict) else None
        if not isinstance(sid, str) or not _SAFE_ID.match(sid):
            raise DataError(f"{samples_dir / 'manifest.json'}: sample #{i} has id {sid!r}; ids must be letters, "
                            "digits, '.', '_' or '-' (they name files under reports/): rerun `dvc repro sample`")
        if sid in seen:
            raise DataError(f"{samples_dir / 'manifest.json'}: sample id {sid!r} appears twice: rerun "
                            "`dvc repro sample`")
        seen.add(sid)
        midi = (samples_dir / str(s.get("path") or f"{sid}.mid")).resolve()
        if root not in midi.parents:
            raise DataError(f"{samples_dir / 'manifest.json'}: sample {sid!r} points outside {samples_dir}")
        if not midi.is_file():
            raise DataError(f"MIDI file {midi} of sample {sid!r} not found: rerun `dvc repro sample`")
    return samples


def midi_path(samples_dir: Path, sample: Mapping) -> Path:
    """Where a manifest record's MIDI file is: its `path`, else `<id>.mid`, inside `samples_dir`."""
    return Path(samples_dir) / str(sample.get("path") or f"{sample['id']}.mid")


# ------------------------------------------------------------------------------------------------------- formatting

def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    """A finite float from a number or numeric string; None for None, NaN, bools, text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def fmt(value: Any, key: str = "", digits: int = 3) -> str:
    """Display text (not yet escaped) for a metric value: '—' when missing, percentages for rates."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    num = _number(value)
    if num is None:
        return "—" if value is None or isinstance(value, (int, float)) or value == "" else str(value)
    if key in _PERCENT_KEYS or key.startswith("style_accuracy") or key.endswith("_share"):
        return f"{100 * num:.1f}%"
    if num == int(num) and abs(num) < 1e15 and (isinstance(value, int) or key.startswith("n_")):
        return str(int(num))
    return f"{num:.{digits}f}" if abs(num) < 1e5 else f"{num:.4g}"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """An HTML table; headers and cells are escaped here."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{_esc(cls)}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _kv_table(rows: Iterable[tuple[str, str]], cls: str = "kv") -> str:
    body = "\n".join(f"<tr><th scope=\"row\">{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{_esc(cls)}"><tbody>\n{body}\n</tbody></table>'


# ---------------------------------------------------------------------------------------------------- page sections

def _music_section(eval_metrics: Mapping) -> str:
    gen, real, gap = (eval_metrics.get(k) or {} for k in ("generated", "real", "gap"))
    rows = [(label, fmt(gen.get(key), key), fmt(real.get(key), key), fmt(gap.get(key), key) if key in gap else "—")
            for label, key in _MUSIC_ROWS if key in gen or key in real]
    if not rows:
        return '<p class="muted">eval.json holds no generated/real music statistics.</p>'
    return _table(("Metric", "Generated", "Real (test)", "Gap |gen − real|"), rows, "num")


def _style_section(eval_metrics: Mapping) -> str:
    def with_n(key: str, n_key: str) -> str:
        n = eval_metrics.get(n_key)
        return fmt(eval_metrics.get(key), key) + (f" (n = {fmt(n, 'n_')})" if _number(n) is not None else "")

    rows = [("With CFG", with_n("style_accuracy_cfg", "n_style_cfg")),
            ("Without CFG", with_n("style_accuracy_nocfg", "n_style_nocfg")),
            ("Real test pieces", fmt(eval_metrics.get("real_test_style_accuracy"), "real_test_style_accuracy")),
            ("Chance", fmt(eval_metrics.get("style_chance"), "style_chance"))]
    if "style_majority_rate" in eval_metrics:
        rows.append(("Majority class", fmt(eval_metrics.get("style_majority_rate"), "style_majority_rate")))
    return _kv_table(rows)


def _model_section(eval_metrics: Mapping, train_metrics: Mapping | None) -> str:
    rows = [("Test bits per token", fmt(eval_metrics.get("test_bits_per_token"))),
            ("Decodable samples", fmt(eval_metrics.get("decodable_fraction"), "decodable_fraction"))]
    if "test_tokens" in eval_metrics:
        rows.append(("Test tokens", fmt(eval_metrics.get("test_tokens"), "n_")))
    rows += _memorization_rows(eval_metrics["memorization"]) if "memorization" in eval_metrics else []
    if train_metrics:
        for label, key in (("Validation loss", "val_loss"), ("Validation bits per token", "val_bits_per_token"),
                           ("Train loss", "train_loss"), ("Training steps", "steps"), ("Parameters", "params")):
            if key in train_metrics:
                rows.append((label, fmt(train_metrics[key], "n_" if key in ("steps", "params") else key)))
    return _kv_table(rows)


def _sample_metrics_section(sample_metrics: Mapping) -> str:
    rows = [(_SAMPLE_LABELS.get(k, k), fmt(v, k)) for k, v in sample_metrics.items()
            if not isinstance(v, (dict, list))]
    if not rows:
        return '<p class="muted">metrics/sample.json is empty.</p>'
    return _kv_table(rows)


def _composer_section(rows: list[dict] | None) -> str:
    if rows is None:
        return '<p class="muted">No per-composer table (metrics/eval_composers.tsv is absent).</p>'
    if not rows:
        return '<p class="muted">The per-composer table is empty.</p>'
    headers = list(rows[0].keys())
    labels = {"composer": "Composer", "style_accuracy": "Style acc. (CFG)", "style_accuracy_nocfg":
              "Style acc. (no CFG)", "test_bits_per_token": "Test bits/token", "n_generated": "Generated",
              "h1": "H1", "h4": "H4", "gs": "GS"}
    body = [[str(r.get(h, "")) if h == "composer" else fmt(r.get(h, ""), h) for h in headers] for r in rows]
    return _table([labels.get(h, h) for h in headers], body, "num composers")


def _memorization_rows(memo: Mapping) -> list[tuple[str, str]]:
    """eval.json's memorization figures as 'generated / real test' (the real test pieces: the chance baseline)."""
    sides = (memo.get("generated") or {}, memo.get("real_test") or {})
    labels = {f"copy{n}_share": f"Copying ≥ {n} training bars" for n in (COPY_NOTE_BARS, COPY_FLAG_BARS)}
    return [(f"{label} (generated / real)", " / ".join(fmt(side.get(key), key) for side in sides))
            for key, label in {**labels, "max_bars": "Longest copy, bars"}.items()]


def _copy_flag(copy: Mapping | None) -> str:
    """A badge for a sample copying >= COPY_FLAG_BARS consecutive bars of a training piece, a milder note for >= 2."""
    n = _number((copy or {}).get("copied_bars"))
    if n is None or n < COPY_NOTE_BARS:
        return ""
    piece, where = copy.get("train_piece") or "?", f" (from its bar {copy.get('train_bar')})"
    if n >= COPY_FLAG_BARS:
        return (f'<p class="copy"><span class="badge copied">copies {int(n)} bars of {_esc(piece)}</span>'
                f"{_esc(where)}: a verbatim run of the training split, transposition aside</p>")
    return f'<p class="copy-note">Shares {int(n)} consecutive bars with training piece {_esc(piece + where)}.</p>'


def _figures_section(figures: list[tuple[str, str]]) -> str:
    """The training curve and per-composer figures as plain images (they show offline, unlike `dvc plots show`)."""
    if not figures:
        return ""
    items = "\n".join(f'<figure class="panel"><img class="figure" src="{_esc(quote(path))}" alt="{_esc(caption)}">'
                      f"<figcaption>{_esc(caption)}</figcaption></figure>" for caption, path in figures)
    return f"<h2>Figures</h2>\n{items}"


def _per_piece_metrics(sample: Mapping, eval_metrics: Mapping | None) -> dict | None:
    """Per-sample metrics when some input has them: the manifest record's `metrics`, or eval.json's `samples` /
    `per_sample` (a dict keyed by sample id, or a list of dicts with an `id`)."""
    if isinstance(sample.get("metrics"), dict):
        return sample["metrics"]
    for key in ("per_sample", "samples"):
        table = (eval_metrics or {}).get(key)
        if isinstance(table, dict) and isinstance(table.get(sample["id"]), dict):
            return table[sample["id"]]
        if isinstance(table, list):
            for row in table:
                if isinstance(row, dict) and row.get("id") == sample["id"]:
                    return row
    return None


def _sample_card(sample: Mapping, eval_metrics: Mapping | None, stats: Mapping | None,
                 copy: Mapping | None = None) -> str:
    sid = str(sample["id"])
    audio_src, roll_src = _esc(f"{AUDIO_DIR}/{quote(sid)}.wav"), _esc(f"{ROLLS_DIR}/{quote(sid)}.png")
    if sample.get("kind") == "continuation":
        prompt, bars = sample.get("prompt_piece_id") or "?", sample.get("prompt_bars")
        kind = (f'<span class="badge cont">continuation</span> of <b>{_esc(prompt)}</b>'
                + ((" (its first bar is the prompt)" if _number(bars) == 1 else
                    f" (its first {_esc(fmt(bars, 'n_'))} bars are the prompt)") if _number(bars) is not None else ""))
    else:
        kind = f'<span class="badge free">{_esc(sample.get("kind") or "free")}</span>'
    def short(key: str) -> str:  # 1.5 rather than 1.500 for settings
        num = _number(sample.get(key))
        return fmt(sample.get(key)) if num is None else f"{num:.4g}"

    top_k = sample.get("top_k")
    settings = [("CFG scale", short("cfg_scale")), ("Temperature", short("temperature")), ("Top-p", short("top_p")),
                ("Top-k", "off" if _number(top_k) == 0 else short("top_k")),
                ("Repetition penalty", short("repetition_penalty")), ("BPM", short("bpm")), ("Bars", short("n_bars")),
                ("Seconds", fmt(sample.get("seconds"), digits=1)), ("Tokens", short("n_tokens"))]
    if "decodable" in sample:
        settings.append(("Decodable", fmt(bool(sample.get("decodable")))))
    dl = "".join(f"<div><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>" for k, v in settings)
    silent = stats is not None and _number(stats.get("rms")) is not None and stats["rms"] < SILENT_RMS
    warn = '<p class="warn">This sample rendered silent (it has no notes).</p>' if silent else ""
    piece = _per_piece_metrics(sample, eval_metrics) or {}
    keys = [k for k in _PIECE_LABELS if k in piece] + [k for k in piece if k not in _PIECE_LABELS and k != "id"
                                                       and _number(piece[k]) is not None]
    metrics_html = ('<div class="piece-metrics">' + _table([_PIECE_LABELS.get(k, k) for k in keys],
                                                            [[fmt(piece[k], k) for k in keys]], "num small") + "</div>"
                    if keys else "")
    return f"""<article class="sample" id="{_esc('s-' + sid)}">
<header><h3>{_esc(sid)}</h3><p class="kind">{_esc(sample.get('composer') or 'unknown')} · {kind}</p></header>
<dl class="settings">{dl}</dl>
{warn}{_copy_flag(copy)}<audio controls preload="none" src="{audio_src}">Your browser cannot play WAV audio:
<a href="{audio_src}">download it</a>.</audio>
<img class="roll" src="{roll_src}" alt="{_esc('Piano roll of ' + sid)}" width="1200" height="400" loading="lazy">
{metrics_html}
</article>"""


def _samples_section(samples: list[Mapping], eval_metrics: Mapping | None, stats: Mapping[str, Mapping],
                     copies: Mapping[str, Mapping]) -> str:
    groups: dict[str, list[Mapping]] = {}
    for s in samples:  # composers in manifest order (the sample stage puts unconditional last)
        groups.setdefault(str(s.get("composer") or "unknown"), []).append(s)
    nav = " · ".join(f'<a href="#c-{i}">{_esc(name)}</a> ({len(g)})' for i, (name, g) in enumerate(groups.items()))
    parts = [f'<nav class="composers">{nav}</nav>']
    for i, (name, group) in enumerate(groups.items()):
        cards = "\n".join(_sample_card(s, eval_metrics, stats.get(str(s["id"])), copies.get(str(s["id"])))
                          for s in group)
        parts.append(f'<section class="composer" id="c-{i}"><h2>{_esc(name)} '
                     f'<span class="count">{len(group)} sample{"s" if len(group) != 1 else ""}</span></h2>\n'
                     f"{cards}\n</section>")
    return "\n".join(parts)


_CSS = """
:root { --ink: #1d2733; --muted: #5f6b7a; --line: #dde3ea; --bg: #f5f7fa; --card: #ffffff; --accent: #0a58a8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 20px 60px; }
h1 { font-size: 26px; margin: 4px 0 2px; }
h2 { font-size: 19px; margin: 26px 0 10px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0; font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.sub, .muted { color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 14px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.panel h4 { margin: 2px 0 8px; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.panel.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { font-weight: 600; color: var(--muted); font-size: 13px; border-bottom: 2px solid var(--line); }
table.num td + td, table.num th + th { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { font-weight: 500; width: 58%; }
table.kv td { text-align: right; font-variant-numeric: tabular-nums; }
table.small { font-size: 13px; width: auto; min-width: 40%; }
table.small th, table.small td { padding: 3px 14px; }
tbody tr:last-child th, tbody tr:last-child td { border-bottom: none; }
nav.composers { margin: 8px 0 0; color: var(--muted); }
a { color: var(--accent); }
.count { font-size: 13px; font-weight: 400; color: var(--muted); }
.sample { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
          margin: 0 0 14px; }
.sample header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; }
.kind { margin: 0; color: var(--muted); }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; color: #fff; }
.badge.free { background: #2e8b57; } .badge.cont { background: #8a5cc2; } .badge.copied { background: #c0392b; }
.copy { margin: 4px 0; font-weight: 600; } .copy-note { margin: 4px 0; color: var(--muted); }
dl.settings { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 8px 0; font-size: 13px; }
dl.settings div { display: flex; gap: 5px; } dl.settings dt { color: var(--muted); } dl.settings dd { margin: 0; }
audio { width: 100%; margin: 4px 0 6px; }
img.roll { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.piece-metrics { margin-top: 8px; }
.warn { color: #a94400; margin: 4px 0; }
img.figure { max-width: 100%; display: block; }
figure { margin: 0 0 14px; } figcaption { color: var(--muted); font-size: 13px; }
footer { margin-top: 30px; color: var(--muted); font-size: 13px; }
"""


def build_report(samples_dir: str | Path, reports_dir: str | Path, sample_metrics: Mapping | None,
                 eval_metrics: Mapping | None, eval_composers_rows: list[dict] | None,
                 train_metrics: Mapping | None, *, samples: list[dict] | None = None,
                 render_stats: Mapping[str, Mapping] | None = None,
                 figures: list[tuple[str, str]] | None = None, copies_rows: list[dict] | None = None) -> Path:
    """Write `reports_dir/index.html` for the samples of `samples_dir/manifest.json` (or `samples`, already loaded)
    and the given metrics; returns its path. Audio and piano rolls are referenced as audio/<id>.wav, rolls/<id>.png
    (relative, so the page works from file://). `render_stats` (id -> render_wav's result) flags silent samples.
    `figures` ((caption, relative PNG path), mozart.report.figures) are shown as images under "Figures".
    `copies_rows` (metrics/eval_copies.tsv, mozart.evaluation.memorization) flag samples copied from training."""
    from mozart.infra.atomic import write_text

    if samples is None:
        samples = load_manifest(samples_dir)
    stats = dict(render_stats or {})
    if eval_metrics:
        summary = f"""<div class="grid">
<div class="panel wide"><h4>Generated vs real music</h4>{_music_section(eval_metrics)}</div>
<div class="panel"><h4>Style adherence (composer classifier accuracy)</h4>{_style_section(eval_metrics)}</div>
<div class="panel"><h4>Model</h4>{_model_section(eval_metrics, train_metrics)}</div>
<div class="panel"><h4>Sampling (metrics/sample.json)</h4>{_sample_metrics_section(sample_metrics or {})}</div>
</div>"""
    else:
        sampling = _sample_metrics_section(sample_metrics or {})
        summary = f"""<p class="muted">No evaluation metrics (metrics/eval.json) were given.</p>
<div class="grid"><div class="panel"><h4>Sampling (metrics/sample.json)</h4>{sampling}</div>
{f'<div class="panel"><h4>Model</h4>{_model_section({}, train_metrics)}</div>' if train_metrics else ''}</div>"""
    n_comp = len({str(s.get("composer")) for s in samples})
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mozart — generated samples</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>Mozart — generated samples</h1>
<p class="sub">{len(samples)} sample{"s" if len(samples) != 1 else ""} in {n_comp} group{"s" if n_comp != 1 else ""}
by composer</p>
<h2>Summary</h2>
{summary}
<h2>Per composer</h2>
<div class="panel">{_composer_section(eval_composers_rows)}</div>
<h2>Samples</h2>
{_samples_section(samples, eval_metrics, stats, {str(r.get('sample')): r for r in copies_rows or []})}
{_figures_section(figures or [])}
<footer>Audio: FluidSynth, General MIDI acoustic grand piano. Piano rolls: pitch against bars, bar lines in grey.
H1/H4: pitch-class entropy over 1/4-bar windows (bits); GS: grooving similarity; gaps are |generated − real|.</footer>
</main>
</body>
</html>
"""
    out = Path(reports_dir) / INDEX
    write_text(out, page)
    return out


__all__ = ["build_report", "load_manifest", "midi_path", "read_tsv", "fmt"]
