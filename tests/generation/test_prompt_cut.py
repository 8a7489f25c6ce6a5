"""Issue 16, point 4: a prompt MIDI is cut to its first --prompt-bars bars before it is tokenized, with exactly the
tokens the old whole-file tokenization gave; a prompt without timing (0 ticks per quarter) is one clear line."""
from __future__ import annotations


import pytest
import symusic

from mozart.cli import main
from mozart.data import tokenize
from mozart.errors import MozartError
from mozart.generation.engine import bars_end_tick, cut_to_bars, load_model_dir, load_prompt
from sampling_helpers import one_thread, make_model_dir, scale_score, write_midi  # noqa: F401 (autouse fixture)
from sampling_helpers import write_zero_tpq_midi


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompt")
    return {ts: load_model_dir(make_model_dir(root / f"ts-{ts}", context=64, use_time_signatures=ts), "cpu")
            for ts in (False, True)}


def _with_signatures(score: symusic.Score, *signatures: tuple[int, int, int]) -> symusic.Score:
    score.time_signatures.clear()
    for time, num, den in signatures:
        score.time_signatures.append(symusic.TimeSignature(time, num, den))
    return score


def test_bars_end_tick_covers_both_bar_layouts():
    tpq = 480
    assert bars_end_tick(_with_signatures(symusic.Score(tpq), (0, 4, 4)), 3) == 3 * 4 * tpq
    assert bars_end_tick(_with_signatures(symusic.Score(tpq), (0, 3, 4)), 3) == 3 * 4 * tpq  # 4/4 is the later
    assert bars_end_tick(_with_signatures(symusic.Score(tpq), (0, 6, 4)), 3) == 3 * 6 * tpq
    # two bars of 4/4, then 12/8 (6 quarters): bar 3 ends at 8 + 6 quarters
    assert bars_end_tick(_with_signatures(symusic.Score(tpq), (0, 4, 4), (8 * tpq, 12, 8)), 3) == 14 * tpq


@pytest.mark.parametrize("use_ts", [False, True])
@pytest.mark.parametrize("signatures", [[(0, 4, 4)], [(0, 3, 4)], [(0, 6, 8), (480 * 9, 5, 4)], []],
                         ids=["4/4", "3/4", "6/8 then 5/4", "none"])
@pytest.mark.parametrize("prompt_bars", [1, 3])
def test_the_cut_prompt_has_the_tokens_of_the_whole_file_cut(models, tmp_path, use_ts, signatures, prompt_bars):
    lm = models[use_ts]
    score = _with_signatures(scale_score(12, seed=prompt_bars), *signatures)
    path = write_midi(score, tmp_path / "prompt.mid")
    whole = tokenize.encode_score(lm.tokenizer, symusic.Score(str(path)))
    expected = [lm.model.config.bos_id, *cut_to_bars(whole, lm.bar_id, prompt_bars)]
    assert load_prompt(path, lm, prompt_bars).ids == expected


def test_a_long_prompt_is_cut_before_it_is_tokenized(models, tmp_path, monkeypatch):
    lm = models[False]
    path = write_midi(scale_score(400), tmp_path / "long.mid")  # 400 bars, 11 notes each
    seen = []
    real_encode = tokenize.encode_score

    def spy(tokenizer, score):
        seen.append(score.note_num())
        return real_encode(tokenizer, score)

    monkeypatch.setattr(tokenize, "encode_score", spy)
    prompt = load_prompt(path, lm, 2)
    assert prompt.n_bars == 2 and sum(t == lm.bar_id for t in prompt.ids) == 3
    assert seen and seen[0] <= 4 * 11  # at most the kept bars plus the spare ones, not 4,400 notes


def test_a_prompt_with_zero_ticks_per_quarter_is_one_clear_error(models, tmp_path):
    with pytest.raises(MozartError, match="0 ticks per quarter"):
        load_prompt(write_zero_tpq_midi(tmp_path / "zero.mid"), models[False], 2)


def test_generate_with_a_zero_tpq_prompt_exits_2_without_traceback(tmp_path, capsys):
    model_dir = make_model_dir(tmp_path / "m", context=64)
    code = main(["generate", "--model", str(model_dir), "--prompt", str(write_zero_tpq_midi(tmp_path / "zero.mid")),
                 "--prompt-bars", "2", "--bars", "4", "--device", "cpu", "--out", str(tmp_path / "out.mid")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if "error:" in ln] == [ln for ln in err.splitlines() if ln.strip()], err
    assert "zero.mid" in err and "0 ticks per quarter" in err
