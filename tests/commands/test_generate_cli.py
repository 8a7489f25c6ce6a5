"""`mozart generate` / `mozart composers` end to end on a tiny random model directory."""
from __future__ import annotations

from pathlib import Path

import pytest
import symusic

from mozart.cli import main
from mozart.generation.engine import cut_to_bars, load_model_dir, sample_tokens
from mozart.generation.decoder import SamplingSettings
from mozart.data.tokenize import decode_ids, encode_score
from sampling_helpers import one_thread, scale_score, tokenizer, write_midi  # noqa: F401 (autouse fixture)
from sampling_helpers import make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("gen"), context=128)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["generate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _notes(score: symusic.Score) -> list[tuple[int, int, int, int]]:
    return sorted((n.time, n.duration, n.pitch, n.velocity) for t in score.tracks for n in t.notes)


def test_bars_gives_exactly_that_many_bars(model_dir):
    lm = load_model_dir(model_dir, "cpu")
    gen = sample_tokens(lm, [1, 2, 0], SamplingSettings(cfg_scale=1.5), n_bars=3, seed=0, max_new_tokens=4000)
    for row in gen.tokens:
        assert sum(t == lm.bar_id for t in row) == 3
    assert gen.n_bars == [3, 3, 3]


def test_generate_writes_midi_with_the_requested_tempo_and_length(model_dir, tmp_path, capsys):
    out = tmp_path / "piece.mid"
    code, stdout, _ = _run(capsys, "--model", model_dir, "--composer", "chopin", "--bars", 2, "--bpm", 90,
                           "--seed", 5, "--out", out)
    assert code == 0 and "Chopin" in stdout and "2 bars" in stdout
    score = symusic.Score(str(out))
    assert score.note_num() > 0
    assert [round(t.qpm, 2) for t in score.tempos] == [90.0]
    bar_ticks = 4 * score.ticks_per_quarter
    assert max(n.time for n in score.tracks[0].notes) < 2 * bar_ticks  # every onset inside the 2 bars


def test_seconds_convert_to_bars_at_the_bpm(model_dir, tmp_path, capsys):
    code, stdout, _ = _run(capsys, "--model", model_dir, "--seconds", 5, "--bpm", 120, "--seed", 1,
                           "--out", tmp_path / "s.mid")
    assert code == 0 and "3 bars at 120 bpm" in stdout  # 5 s at 120 bpm = 10 beats -> 3 bars of 4/4


def test_same_seed_same_piece_and_numbered_outputs(model_dir, tmp_path, capsys):
    args = ["--model", model_dir, "--composer", "bach", "--bars", 2, "--num-samples", 2]
    _run(capsys, *args, "--seed", 3, "--out", tmp_path / "a.mid")
    _run(capsys, *args, "--seed", 3, "--out", tmp_path / "b.mid")
    _run(capsys, *args, "--seed", 4, "--out", tmp_path / "c.mid")
    a1, a2 = (tmp_path / "a-1.mid").read_bytes(), (tmp_path / "a-2.mid").read_bytes()
    assert a1 == (tmp_path / "b-1.mid").read_bytes() and a2 == (tmp_path / "b-2.mid").read_bytes()
    assert a1 != a2 and a1 != (tmp_path / "c-1.mid").read_bytes()


def test_continuation_keeps_the_prompt_bars(model_dir, tmp_path, capsys):
    prompt = write_midi(scale_score(10, bpm=96.0, seed=4), tmp_path / "prompt.mid")
    out = tmp_path / "cont.mid"
    code, stdout, _ = _run(capsys, "--model", model_dir, "--prompt", prompt, "--prompt-bars", 4, "--bars", 6,
                           "--seed", 2, "--out", out)
    assert code == 0 and "6 bars" in stdout and "96 bpm" in stdout  # default tempo: the prompt's
    tok = tokenizer()
    kept = decode_ids(tok, cut_to_bars(encode_score(tok, symusic.Score(str(prompt))), tok["Bar_None"], 4))
    result = symusic.Score(str(out))
    bar_ticks = 4 * result.ticks_per_quarter
    first_bars = [n for n in _notes(result) if n[0] < 4 * bar_ticks]
    assert first_bars == _notes(kept) and len(first_bars) == 4 * 11
    assert [round(t.qpm) for t in result.tempos] == [96]


def test_request_is_echoed_and_applied(model_dir, tmp_path, capsys):
    code, stdout, _ = _run(capsys, "--model", model_dir, "--request", "two bars like Mozart, fast", "--seed", 0,
                           "--out", tmp_path / "r.mid")
    assert code == 0
    assert "understood: composer Mozart, 2 bars, 140 bpm" in stdout
    assert [round(t.qpm) for t in symusic.Score(str(tmp_path / "r.mid")).tempos] == [140]


def test_composers_lists_names_and_piece_counts(model_dir, capsys):
    assert main(["composers", "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "Chopin" in out and "30" in out and "Bach" in out and "12" in out and "<unconditional>" not in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "{tmp}/missing"], "model directory"),
    (["--bars", "0"], "--bars must be > 0"),
    (["--composer", "Chopan"], "closest known: Chopin"),
    (["--prompt", "{tmp}/not-midi.mid"], "not a readable MIDI file"),
    (["--prompt", "{tmp}/short.mid", "--prompt-bars", "8", "--bars", "12"], "only 3 bars"),
    (["--prompt", "{tmp}/short.mid", "--prompt-bars", "2", "--bars", "2"], "must be more than --prompt-bars"),
    (["--request", "a minute like Rachmaninoff"], "not trained on Rachmaninoff"),
])
def test_bad_arguments_give_one_clear_line(model_dir, tmp_path, capsys, argv, message):
    (tmp_path / "not-midi.mid").write_text("hello, I am not a MIDI file\n")
    write_midi(scale_score(3), tmp_path / "short.mid")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--model" not in argv:
        argv = ["--model", str(model_dir), *argv]
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "x.mid")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mozart generate: error:") and message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "x.mid").exists()


def test_wav_is_rendered_beside_the_midi(model_dir, tmp_path, capsys):
    pytest.importorskip("fluidsynth")
    if not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file():
        pytest.skip("the FluidR3_GM soundfont is not installed")
    code, stdout, _ = _run(capsys, "--model", model_dir, "--bars", 1, "--seed", 0, "--out", tmp_path / "w.mid",
                           "--wav")
    assert code == 0 and (tmp_path / "w.wav").stat().st_size > 44 and "w.wav" in stdout


def test_precision_defaults_to_int4_on_cpu_and_fp32_is_exact(model_dir, tmp_path, capsys, monkeypatch):
    import torch

    import mozart.commands.generate as generate_module
    from mozart.model.quantize import Int4Linear, resolve_precision

    seen = []
    real = generate_module.load_model_dir
    monkeypatch.setattr(generate_module, "load_model_dir", lambda *a, **k: seen.append(k["precision"]) or real(*a, **k))
    for extra, shown in (([], "device cpu (int4)"), (["--precision", "fp32"], "device cpu (fp32)")):
        code, out, err = _run(capsys, "--model", model_dir, "--composer", "bach", "--bars", 2, "--seed", 1,
                              "--device", "cpu", "--out", tmp_path / f"p{len(extra)}.mid", *extra)
        assert code == 0, err
        assert shown in out  # the summary line says what the model runs in
    assert seen == ["auto", "fp32"]
    assert isinstance(load_model_dir(model_dir, "cpu", precision="auto").model.blocks[0].mlp.c_fc, Int4Linear)
    assert type(load_model_dir(model_dir, "cpu", precision="fp32").model.blocks[0].mlp.c_fc) is torch.nn.Linear
    # auto never picks a CPU kernel for a GPU (pure logic, no GPU needed)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == "int4"
    assert resolve_precision("int8", torch.device("cpu")) == "int8"


def test_a_blend_of_one_composer_at_weight_one_writes_the_same_bytes_as_that_composer(model_dir, tmp_path, capsys):
    outs = []
    for i, composer in enumerate(("chopin", "Chopin:1", "chopin:0.5,bach:0.5")):
        out = tmp_path / f"b{i}.mid"
        code, stdout, _ = _run(capsys, "--model", model_dir, "--composer", composer, "--bars", 3, "--seed", 4,
                               "--device", "cpu", "--precision", "fp32", "--out", out)
        assert code == 0
        outs.append(out.read_bytes())
    assert outs[1] == outs[0]
    assert outs[2] != outs[0] and "Chopin 50% + Bach 50% (blend)" in stdout


def test_end_is_on_by_default_and_no_end_cuts_at_the_bar_count(model_dir, tmp_path, capsys):
    for flag, last_bar_positions in (([], {"Position_0"}), (["--no-end"], None)):
        out = tmp_path / f"e{len(flag)}.mid"
        code, stdout, _ = _run(capsys, "--model", model_dir, "--bars", 3, "--seed", 2, "--out", out, *flag)
        assert code == 0 and "3 bars" in stdout
        score = symusic.Score(str(out))
        onsets = sorted({n.time for t in score.tracks for n in t.notes})
        last_bar = [t for t in onsets if t >= 2 * 4 * score.ticks_per_quarter]
        if last_bar_positions:  # the closing chord: every onset of bar 3 on its downbeat
            assert last_bar == [2 * 4 * score.ticks_per_quarter]
        else:
            assert len(last_bar) > 1
