"""Issue 16, point 4: every `mozart` command validates its device name and numeric options before any work: one
`mozart CMD: error:` line naming the option, exit code 2, no traceback."""
from __future__ import annotations

import pytest

from mozart.cli import main
from mozart.errors import ConfigError
from mozart.infra.device import check_device_name, pick_device
from sampling_helpers import make_model_dir, one_thread, scale_score, write_midi  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("opts"), context=64)


def _one_error_line(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith(f"mozart {argv[0]}: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


GENERATE_BAD = [
    (["--seconds", "inf"], "--seconds"), (["--seconds", "nan"], "--seconds"), (["--seconds", "0"], "--seconds"),
    (["--bpm", "1e9"], "--bpm"), (["--bpm", "nan"], "--bpm"), (["--bars", "0"], "--bars"),
    (["--temperature", "-1"], "--temperature"), (["--temperature", "inf"], "--temperature"),
    (["--temperature", "nan"], "--temperature"), (["--top-k", "-3"], "--top-k"), (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"), (["--top-p", "nan"], "--top-p"),
    (["--repetition-penalty", "0"], "--repetition-penalty"), (["--repetition-penalty", "inf"], "--repetition-penalty"),
    (["--cfg", "-1"], "--cfg"), (["--cfg", "inf"], "--cfg"), (["--cfg", "nan"], "--cfg"),
    (["--seed", "-1"], "--seed"), (["--seed", str(2**64)], "--seed"), (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "1000000"], "--batch-size"), (["--num-samples", "0"], "--num-samples"),
    (["--max-tokens", "0"], "--max-tokens"), (["--prompt-bars", "0"], "--prompt-bars"),
    (["--device", "gpu"], "'gpu'"), (["--device", "cuda:x"], "'cuda:x'"), (["--device", "cpu:0"], "'cpu:0'"),
]


@pytest.mark.parametrize("options, named", GENERATE_BAD, ids=[" ".join(o) for o, _ in GENERATE_BAD])
def test_generate_refuses_each_bad_option_in_one_line(capsys, model_dir, tmp_path, options, named):
    out = tmp_path / "x.mid"
    _one_error_line(capsys, ["generate", "--model", str(model_dir), "--out", str(out), *options], named)
    assert not out.exists()


def test_a_gpu_index_that_does_not_exist_is_one_line(capsys, model_dir, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 2 GPUs, faked on the CPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    _one_error_line(capsys, ["generate", "--model", str(model_dir), "--device", "cuda:7", "--out",
                             str(tmp_path / "x.mid")], "cuda:7", "2 CUDA GPUs")


def test_device_names_are_checked_by_syntax_and_presence(monkeypatch):
    import torch

    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        check_device_name(good)
    for bad in ("", "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:1.0", "cpu:0", "mps:0"):
        with pytest.raises(ConfigError, match="is not a device name"):
            check_device_name(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        pick_device("cuda:0")
    assert pick_device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize("options, named", [(["--grid", "0"], "--grid"), (["--grid", "100000000"], "--grid"),
                                            (["--jobs", "0"], "--jobs"), (["--jobs", "-5"], "--jobs")])
def test_evaluate_refuses_each_bad_option_in_one_line(capsys, tmp_path, options, named):
    path = write_midi(scale_score(2), tmp_path / "a.mid")
    _one_error_line(capsys, ["evaluate", str(path), *options], named)


def test_composers_with_a_missing_model_directory_is_one_line(capsys, tmp_path):
    _one_error_line(capsys, ["composers", "--model", str(tmp_path / "nope")], "nope", "not found")
