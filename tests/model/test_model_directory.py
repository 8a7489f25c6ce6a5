"""Issue 16, point 3: each corruption of a model directory is planted and gives one line naming the file and field.

Every case copies a good tiny model directory, breaks one thing, and checks (a) the library loader raises a
DataError naming the file and the field, and (b) for a representative set, `mozart generate` / `mozart composers`
exit 2 with one `error:` line and no traceback.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from mozart.cli import main
from mozart.errors import DataError, MozartError
from mozart.generation.engine import load_model_dir
from mozart.model.directory import open_model_dir, read_composers
from mozart.model.gpt import load_model
from sampling_helpers import one_thread, make_model_dir  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("good"), context=64)


def _edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Change the JSON object in `name` in place (what `change` returns is ignored)."""
    def plant(model_dir: Path) -> None:
        path = model_dir / name
        value = json.loads(path.read_text())
        change(value)
        path.write_text(json.dumps(value))
    return plant


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def plant(model_dir: Path) -> None:
        path = model_dir / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return plant


def _truncate(name: str, fraction: float) -> Callable[[Path], None]:
    def plant(model_dir: Path) -> None:
        path = model_dir / name
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return plant


def _delete(name: str) -> Callable[[Path], None]:
    return lambda model_dir: (model_dir / name).unlink()


def _swap_special_tokens(tok: dict) -> None:
    specials = tok["config"]["special_tokens"]
    specials[1], specials[2] = specials[2], specials[1]  # BOS <-> EOS: same size, other ids


def _other_vocabulary(tok: dict) -> None:
    tok["config"]["pitch_range"] = [30, 90]  # fewer Pitch tokens: a tokenizer of another model


# (case id, corruption, file named in the error, field named in the error)
CORRUPTIONS = [
    ("config not json", _write("config.json", "{not json"), "config.json", "JSON"),
    ("config a list", _write("config.json", "[1, 2]"), "config.json", "object"),
    ("config field missing", _edit_json("config.json", lambda c: c.pop("vocab_size")), "config.json", "vocab_size"),
    ("config n_head 0", _edit_json("config.json", lambda c: c.update(n_head=0)), "config.json", "n_head"),
    ("config n_layer string", _edit_json("config.json", lambda c: c.update(n_layer="2")), "config.json", "n_layer"),
    ("config d_model not divisible", _edit_json("config.json", lambda c: c.update(n_head=3)), "config.json",
     "d_model"),
    ("config bos out of vocab", _edit_json("config.json", lambda c: c.update(bos_id=10_000)), "config.json",
     "bos_id"),
    ("config dropout nan", _edit_json("config.json", lambda c: c.update(dropout=float("nan"))), "config.json",
     "dropout"),
    ("config shapes d_ff", _edit_json("config.json", lambda c: c.update(d_ff=64)), "model.safetensors",
     "blocks.0.mlp.c_fc.weight"),
    ("config more layers", _edit_json("config.json", lambda c: c.update(n_layer=3)), "model.safetensors",
     "blocks.2"),
    ("config fewer layers", _edit_json("config.json", lambda c: c.update(n_layer=1)), "model.safetensors",
     "blocks.1"),
    ("weights truncated", _truncate("model.safetensors", 0.5), "model.safetensors", "complete safetensors"),
    ("weights header only", _truncate("model.safetensors", 0.001), "model.safetensors", "complete safetensors"),
    ("weights empty", _write("model.safetensors", b""), "model.safetensors", "complete safetensors"),
    ("weights missing", _delete("model.safetensors"), "model.safetensors", "no model.safetensors"),
    ("tokenizer not json", _write("tokenizer.json", "{"), "tokenizer.json", "JSON"),
    ("tokenizer missing", _delete("tokenizer.json"), "tokenizer.json", "missing"),
    ("tokenizer no tokenization", _edit_json("tokenizer.json", lambda t: t.pop("tokenization")), "tokenizer.json",
     "miditok"),
    ("tokenizer other vocabulary", _edit_json("tokenizer.json", _other_vocabulary), "tokenizer.json", "vocab_size"),
    ("tokenizer special ids swapped", _edit_json("tokenizer.json", _swap_special_tokens), "tokenizer.json",
     "bos_id"),
    ("composers not json", _write("composers.json", "nope"), "composers.json", "JSON"),
    ("composers missing", _delete("composers.json"), "composers.json", "missing"),
    ("composers no names", _edit_json("composers.json", lambda c: c.pop("names")), "composers.json", "names"),
    ("composers names not strings", _edit_json("composers.json", lambda c: c.update(names=[0, 1, 2, 3])),
     "composers.json", "names"),
    ("composers n_pieces short", _edit_json("composers.json", lambda c: c.update(n_pieces=[1])), "composers.json",
     "n_pieces"),
    ("composers id beyond names", _edit_json("composers.json", lambda c: c["composer_to_id"].update(Bach=9)),
     "composers.json", "composer_to_id['Bach']"),
    ("composers id mistyped", _edit_json("composers.json", lambda c: c["composer_to_id"].update(Bach="1")),
     "composers.json", "composer_to_id['Bach']"),
    ("composers unconditional_id null", _edit_json("composers.json", lambda c: c.update(unconditional_id=None)),
     "composers.json", "unconditional_id"),
    ("composers more than embedding rows",
     _edit_json("composers.json", lambda c: c.update(names=[*c["names"], "Liszt"], n_pieces=[*c["n_pieces"], 3])),
     "composers.json", "n_composers"),
]


def _broken_copy(good_dir: Path, tmp_path: Path, plant: Callable[[Path], None]) -> Path:
    broken = tmp_path / "model"
    shutil.copytree(good_dir, broken)
    plant(broken)
    return broken


def test_the_good_directory_loads_with_all_four_files(good_dir):
    files = open_model_dir(good_dir)
    assert len(files.tokenizer) == files.model.config.vocab_size
    assert files.composers["names"][1] == "Bach"
    assert not files.model.training


@pytest.mark.parametrize("case, plant, file, field", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_each_planted_corruption_is_one_line_naming_the_file_and_field(good_dir, tmp_path, case, plant, file, field):
    broken = _broken_copy(good_dir, tmp_path, plant)
    with pytest.raises(MozartError) as info:
        load_model_dir(broken, "cpu")
    message = str(info.value)
    assert "\n" not in message
    assert file in message and field in message, message


@pytest.mark.parametrize("case", ["weights truncated", "config shapes d_ff", "tokenizer other vocabulary",
                                  "composers id mistyped"])
def test_generate_exits_2_with_one_error_line_and_no_traceback(good_dir, tmp_path, capsys, case):
    _, plant, file, field = next(c for c in CORRUPTIONS if c[0] == case)
    broken = _broken_copy(good_dir, tmp_path, plant)
    code = main(["generate", "--model", str(broken), "--bars", "2", "--out", str(tmp_path / "x.mid"),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and file in lines[0] and field in lines[0], err
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize("case", ["composers no names", "composers n_pieces short", "composers more than embedding rows",
                                  "config not json"])
def test_composers_command_checks_composers_json_against_the_config(good_dir, tmp_path, capsys, case):
    _, plant, file, field = next(c for c in CORRUPTIONS if c[0] == case)
    broken = _broken_copy(good_dir, tmp_path, plant)
    assert main(["composers", "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert file in err and field in err and "Traceback" not in err, err
    with pytest.raises(DataError):
        read_composers(broken)


def test_load_model_refuses_a_truncated_weights_file(good_dir, tmp_path):
    broken = _broken_copy(good_dir, tmp_path, _truncate("model.safetensors", 0.9))
    with pytest.raises(DataError, match="model.safetensors is not a complete safetensors file"):
        load_model(broken)


def test_load_model_still_loads_identical_weights(good_dir):
    reference = open_model_dir(good_dir).model
    loaded = load_model(good_dir)
    for (name, a), (_, b) in zip(reference.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
