"""Issue 16, point 5: organize records a file whose path is not valid UTF-8 as one rejected row and goes on."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from mozart.config import OrganizeConfig
from mozart.data.organize import organize
from organize_helpers import write_midi


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "corpus"
    write_midi(src / "Bach" / "prelude.mid", seed=1)
    write_midi(src / "Bach" / "fugue.mid", seed=2)
    bad_folder = os.path.join(os.fsencode(src), b"Ch\xe9pin")  # Latin-1, not UTF-8
    os.makedirs(bad_folder)
    write_midi(src / os.fsdecode(bad_folder) / "nocturne.mid", seed=3)
    os.makedirs(os.path.join(os.fsencode(src), b"Satie"))
    write_midi(src / os.fsdecode(os.path.join(os.fsencode(src), b"Satie", b"gymnop\xe9die.mid")), seed=4)
    return src


def test_a_non_utf8_path_is_one_rejected_row_and_the_rest_are_organized(corpus, tmp_path):
    out = tmp_path / "organized"
    summary = organize(OrganizeConfig(n_jobs=1, timeout_s=30), corpus, out)
    assert (summary.files_in, summary.accepted, summary.rejected) == (4, 2, 2)
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("source_path")
    for shown in (r"Ch\xe9pin/nocturne.mid", r"Satie/gymnop\xe9die.mid"):
        assert manifest.loc[shown, "status"] == "rejected"
        assert "not valid UTF-8" in manifest.loc[shown, "reason"]
    accepted = manifest[manifest["status"] == "accepted"]
    assert sorted(accepted.index) == ["Bach/fugue.mid", "Bach/prelude.mid"]
    assert all((out / p).is_file() for p in accepted["out_path"])
    for path in out.rglob("*"):
        os.fsencode(path).decode("utf-8")  # every output name is valid UTF-8 (raises otherwise)
