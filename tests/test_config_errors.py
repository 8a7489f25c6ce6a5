"""Invalid params.yaml fails in the first second, before any work: one `error:` line naming the key and the valid
ones, exit code 2, no traceback, no output written (issue #6)."""
from __future__ import annotations

import dataclasses

import pytest

from mozart import config
from mozart.errors import ConfigError, MozartError
from stage_helpers import FAST, all_paths, assert_one_line_error, make_repo_copy, run_stage

# (dotted key, bad value, words the error line must contain)
BAD_PARAMS = [
    pytest.param("tokenize.n_job", 2, ["tokenize.n_job", "n_jobs", "rows_per_shard"], id="unknown-key-did-you-mean"),
    pytest.param("organize.sourse", "x", ["organize.sourse", "source", "layout"], id="unknown-key-in-organize"),
    pytest.param("prepare.min_pieces", "five", ["prepare.min_pieces", "integer", "five"], id="string-for-int"),
    pytest.param("prepare.val_fraction", [0.1], ["prepare.val_fraction", "number"], id="list-for-float"),
    pytest.param("train.amp", "yes", ["train.amp", "true or false"], id="string-for-bool"),
    pytest.param("tokenize.transpose", 2, ["tokenize.transpose", "list"], id="int-for-list"),
    pytest.param("tokenize.method", "REMY", ["tokenize.method", "REMI", "MIDILike"], id="bad-choice"),
    pytest.param("seed", "abc", ["seed", "integer"], id="seed-not-int"),
    pytest.param("tokenise", {"n_jobs": 1}, ["tokenise", "tokenize", "valid keys"], id="unknown-section"),
]


@pytest.mark.parametrize("key,value,needles", BAD_PARAMS)
def test_bad_params_fail_before_any_work(tmp_path, key, value, needles):
    root = make_repo_copy(tmp_path / "repo", {**FAST, key: value})
    before = all_paths(root)
    proc = run_stage(root, "organize", timeout=120)
    assert_one_line_error(proc, *needles)
    assert all_paths(root) == before, "the stage wrote something although params.yaml was invalid"
    assert not (root / "data" / "organized").exists()


@pytest.mark.parametrize("stage", ["tokenize", "prepare"])
def test_other_stages_validate_the_whole_file(tmp_path, stage):
    """A typo in a section a stage does not read still stops it: params.yaml is validated as a whole."""
    root = make_repo_copy(tmp_path / "repo", {"train.lrr": 0.1})
    before = all_paths(root)
    proc = run_stage(root, stage, timeout=120)
    assert_one_line_error(proc, "train.lrr", "lr", "weight_decay")
    assert all_paths(root) == before


def test_invalid_yaml_is_one_clear_line(tmp_path):
    root = make_repo_copy(tmp_path / "repo")
    (root / "params.yaml").write_text("seed: 1\norganize: {source: [unclosed\n")
    proc = run_stage(root, "organize", timeout=120)
    assert_one_line_error(proc, "params.yaml", "yaml")
    assert not (root / "data" / "organized").exists()


# ----------------------------------------------------------------------------------- the validator itself, in-process

def test_every_section_rejects_every_unknown_key_with_the_valid_list():
    for section, cls in config.SECTIONS.items():
        valid = [f.name for f in dataclasses.fields(cls)]
        with pytest.raises(ConfigError) as err:
            config.build(section, {valid[0] + "_typo": 1})
        msg = str(err.value)
        assert f"{section}.{valid[0]}_typo" in msg
        assert all(name in msg for name in valid), msg
        assert isinstance(err.value, MozartError)


def test_defaults_in_params_yaml_are_valid_and_match_the_dataclasses(repo_root):
    import yaml

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    config.validate_params(params)  # must not raise
    for section, cls in config.SECTIONS.items():
        built = config.build(section, params.get(section))
        assert isinstance(built, cls)
        assert set(params.get(section) or {}) <= {f.name for f in dataclasses.fields(cls)}


def test_ints_accepted_for_floats_but_bools_never_for_numbers():
    assert config.build("prepare", {"val_fraction": 0}).val_fraction == 0.0
    with pytest.raises(ConfigError, match="prepare.min_pieces"):
        config.build("prepare", {"min_pieces": True})
    with pytest.raises(ConfigError, match="tokenize.transpose"):
        config.build("tokenize", {"transpose": [1, "2"]})
