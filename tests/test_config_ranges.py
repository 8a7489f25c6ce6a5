"""Every params.yaml key is range-checked before any work: one bad value per key, each a one-line ConfigError that
names the key, the value and what is allowed (issues 10 and 16). The table must cover every key of every section."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import time

import pytest

from mozart import config
from mozart.errors import ConfigError
from stage_helpers import FAST, all_paths, assert_one_line_error, make_repo_copy, run_stage, stage_env

# section -> key -> a value of the right type that is out of range (or not finite, or not a valid choice)
BAD = {
    "organize": {"source": "", "layout": "flat", "min_works_per_composer": 0, "max_works_per_composer": -1,
                 "timeout_s": 0, "n_jobs": 0, "aliases": None},
    "tokenize": {"method": "ABC", "pitch_min": -1, "pitch_max": 128, "positions_per_beat": 0, "num_velocities": 0,
                 "use_time_signatures": None, "use_tempos": None, "transpose": [30], "n_jobs": 0,
                 "rows_per_shard": 0, "timeout_s": math.inf},
    "prepare": {"min_pieces": 0, "val_fraction": 1.0, "test_fraction": -0.1},
    "model": {"n_layer": 0, "d_model": 0, "n_head": 0, "d_ff": 0, "context": 1, "dropout": 1.0,
              "positions": "alibi", "rope_base": 0},
    "train": {"seq_len": 0, "batch_size": 0, "grad_accum": 0, "max_steps": 0, "lr": math.inf, "weight_decay": -1,
              "warmup_frac": 1.0, "grad_clip": math.nan, "label_smoothing": 1.0, "p_uncond": 2, "amp": None,
              "grad_checkpointing": "sometimes", "compile": None, "device": "tpu", "eval_every": 0,
              "eval_batches": 10**9, "ckpt_every": 0, "resume": "always", "num_workers": -1, "max_minutes": -1, "threads": -1,
              "init_from": None},
    "sample": {"composers": [""], "n_top_composers": -1, "n_per_composer": -1, "bars": 0, "n_prompts": -1,
               "prompt_bars": 0, "continuation_bars": 1, "temperature": -1, "top_k": -1, "top_p": 0,
               "repetition_penalty": 0, "repetition_window": 0, "cfg_scale": math.nan, "bpm": 1e9,
               "batch_size": 0, "max_tokens": 0, "device": "gpu", "end": None,
               "attention_sinks": -1},
    "evaluate": {"grid": 0, "use_time_signatures": None, "max_real_pieces": -1, "nll_batches": 0, "device": "x",
                 "n_top_composers": 1, "n_per_composer": 0, "cfg_sweep": [-1.0], "structure": None},
    "render": {"soundfont": " ", "sample_rate": 100},
}
CASES = [pytest.param(s, k, v, id=f"{s}.{k}={v!r}") for s, keys in BAD.items() for k, v in keys.items()]


def test_the_table_covers_every_key_of_every_section():
    for section, cls in config.SECTIONS.items():
        assert set(BAD[section]) == {f.name for f in dataclasses.fields(cls)}, section


@pytest.mark.parametrize("section,key,value", CASES)
def test_a_bad_value_is_one_line_naming_key_value_and_what_is_allowed(section, key, value):
    with pytest.raises(ConfigError) as err:
        config.validate_params({section: {key: value}})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"params.yaml: {section}.{key}"), message
    if value is not None:  # a wrong type names the type instead of a range
        assert repr(value) in message or str(value) in message, message
        assert "must be" in message, message


@pytest.mark.parametrize("params,needles", [
    ({"model": {"d_model": 100, "n_head": 8}}, ["model.d_model", "model.n_head"]),
    ({"model": {"context": 128}, "train": {"seq_len": 256}}, ["train.seq_len", "model.context"]),
    ({"train": {"batch_size": 65536}, "model": {"context": 1_048_576}, "_seq": 1}, ["memory"]),
    ({"tokenize": {"pitch_min": 90, "pitch_max": 60}}, ["tokenize.pitch_min", "tokenize.pitch_max"]),
    ({"prepare": {"val_fraction": 0.5, "test_fraction": 0.5}}, ["prepare.val_fraction", "prepare.test_fraction"]),
    ({"sample": {"prompt_bars": 8, "continuation_bars": 8}}, ["sample.continuation_bars", "sample.prompt_bars"]),
], ids=["heads-divide-width", "seq-len-fits-context", "batch-fits-memory", "pitch-range", "split-fractions",
        "continuation-longer-than-prompt"])
def test_checks_across_keys_and_sections(params, needles):
    if params.pop("_seq", None):
        params["train"]["seq_len"] = 1_048_576
    with pytest.raises(ConfigError) as err:
        config.validate_params(params)
    assert all(n in str(err.value) for n in needles), err.value


@pytest.mark.parametrize("value", [["a", "b"], "text", 3])
def test_a_section_that_is_not_a_mapping_is_one_clear_line(value):
    with pytest.raises(ConfigError, match="params.yaml: train must be a mapping"):
        config.validate_params({"train": value})


@pytest.mark.parametrize("seed", [-1, 2**40, 1.5, True])
def test_the_seed_is_a_non_negative_32_bit_integer(seed):
    with pytest.raises(ConfigError, match="seed"):
        config.validate_params({"seed": seed})


def test_library_callers_get_the_same_checks_when_a_config_is_made():
    with pytest.raises(ConfigError, match="train.lr = inf"):
        config.TrainConfig(lr=math.inf)
    with pytest.raises(ConfigError, match="model.d_model"):
        config.ModelConfig(d_model=100, n_head=8)


def test_seq_len_beyond_the_context_stops_a_stage_within_two_seconds(tmp_path):
    root = make_repo_copy(tmp_path / "repo", {**FAST, "model.context": 64, "train.seq_len": 128})
    before = all_paths(root)
    started = time.monotonic()
    proc = run_stage(root, "train", timeout=60)
    elapsed = time.monotonic() - started
    assert_one_line_error(proc, "train.seq_len", "model.context")
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert all_paths(root) == before


def test_a_bad_params_yaml_fails_before_torch_or_any_data_is_loaded(tmp_path):
    """Why the check above is fast, asserted without a clock: the error comes before the heavy imports."""
    root = make_repo_copy(tmp_path / "repo", {**FAST, "model.context": 64, "train.seq_len": 128})
    proc = subprocess.run([sys.executable, "-X", "importtime", "stages/train.py"], cwd=root, env=stage_env(root),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "yaml" in imported and not {"torch", "pandas", "miditok", "numpy"} & imported
