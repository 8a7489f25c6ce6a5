"""The prepare stage: composer ids, work-grouped deterministic splits, data.json accounting (mozart.data.prepare)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from mozart.config import PrepareConfig
from mozart.errors import ConfigError, DataError, MozartError
from mozart.data.prepare import composer_ids, prepare, split_works
from mozart.data.store import TokenStoreReader, read_store_json, read_vocab_info
from organize_helpers import write_fake_pipeline


def asap_like_pieces(n_works: int = 12, performances: int = 3):
    """Works by 3 big composers (several performances each) and 2 rare ones."""
    pieces = []
    for w in range(n_works):
        composer = ["Bach", "Chopin", "Beethoven"][w % 3]
        pieces += [(f"{composer}/work{w} (perf{k})", composer, f"{composer}/work{w}") for k in range(performances)]
    pieces += [("Satie/gnossienne", "Satie", "Satie/gnossienne"), ("Lange/fantasia", "Gustav Lange", "Lange/f")]
    return pieces


def run_prepare(tmp_path, pieces, cfg=PrepareConfig(min_pieces=5), seed=1, **kwargs):
    organized, tokens = write_fake_pipeline(tmp_path / "data", pieces, **kwargs)
    summary = prepare(organized, tokens, tmp_path / "prepared", tmp_path / "metrics" / "data.json", cfg, seed)
    meta = pd.read_parquet(tmp_path / "prepared" / "metadata.parquet")
    composers = json.loads((tmp_path / "prepared" / "composers.json").read_text())
    return summary, meta, composers


def test_composer_ids_zero_alphabetical_then_other():
    ids = composer_ids({"Chopin": 7, "Bach": 5, "Satie": 1, "Gustav Lange": 4}, min_pieces=5)
    assert ids["names"] == ["<unconditional>", "Bach", "Chopin", "OTHER"]
    assert ids["n_pieces"] == [0, 5, 7, 5]
    assert ids["unconditional_id"] == 0 and ids["other_id"] == 3
    assert ids["composer_to_id"] == {"Bach": 1, "Chopin": 2, "Gustav Lange": 3, "Satie": 3}
    assert composer_ids({"Bach": 9}, 5)["other_id"] is None


def test_no_work_in_two_splits_and_stored_transpositions_are_dropped(tmp_path):
    _, meta, composers = run_prepare(tmp_path, asap_like_pieces(), transposes=(0, -1, 2),
                                     cfg=PrepareConfig(min_pieces=5, val_fraction=0.2, test_fraction=0.2))
    assert (meta.groupby("work_id")["split"].nunique() == 1).all()
    assert set(meta["split"]) == {"train", "val", "test"}
    assert len(meta) == len(asap_like_pieces()) and set(meta["transpose"]) == {0}  # one row per piece
    assert composers["names"] == ["<unconditional>", "Bach", "Beethoven", "Chopin", "OTHER"]
    assert set(meta.loc[meta["composer"].isin(["Satie", "Gustav Lange"]), "composer_id"]) == {4}
    # shard + row point at the right row of the right shard
    for shard, rows in meta.groupby("shard"):
        table = pd.read_parquet(tmp_path / "data" / "tokens" / shard, columns=["piece_id", "transpose"])
        assert table.iloc[rows["row"]]["piece_id"].tolist() == rows["piece_id"].tolist()
        assert set(table.iloc[rows["row"]]["transpose"]) == {0}


def test_token_store_holds_every_piece_of_its_split_in_metadata_order(tmp_path):
    _, meta, _ = run_prepare(tmp_path, asap_like_pieces(), rows_per_shard=5,
                             cfg=PrepareConfig(min_pieces=5, val_fraction=0.2, test_fraction=0.2))
    reader = TokenStoreReader(tmp_path / "prepared")
    store = read_store_json(tmp_path / "prepared")
    for split, rows in meta.groupby("split"):
        assert rows["store_row"].tolist() == list(range(len(rows)))
        assert store["splits"][split]["n_pieces"] == len(rows)
        assert store["splits"][split]["n_tokens"] == rows["n_tokens"].sum()
        assert reader.store(split).composer_ids.tolist() == rows["composer_id"].tolist()
    for shard, rows in meta.groupby("shard"):
        table = pd.read_parquet(tmp_path / "data" / "tokens" / shard, columns=["tokens"])
        for row, split, store_row in zip(rows["row"], rows["split"], rows["store_row"]):
            assert reader.ids(split, store_row) == table["tokens"].iloc[row].tolist()
    assert store["transpose"] == [] and store["vocab_size"] < 65536


def test_tokenize_transpositions_reach_the_store_and_oversized_vocabularies_fail(tmp_path, monkeypatch):
    organized, tokens = write_fake_pipeline(tmp_path / "data", asap_like_pieces())
    (tokens / "augment.json").write_text(json.dumps({"transpose": [2, -1]}))
    prepare(organized, tokens, tmp_path / "prepared", tmp_path / "data.json", PrepareConfig(min_pieces=5), 1)
    assert read_store_json(tmp_path / "prepared")["transpose"] == [-1, 2]

    huge = dataclasses.replace(read_vocab_info(tokens / "tokenizer.json"), size=70_000)
    monkeypatch.setattr("mozart.data.prepare.read_vocab_info", lambda path: huge)
    with pytest.raises(DataError, match=r"70,000 tokens, more than the 65,536 a uint16 token store can hold"):
        prepare(organized, tokens, tmp_path / "again", tmp_path / "data.json", PrepareConfig(min_pieces=5), 1)
    assert not (tmp_path / "again").exists()


def test_splits_are_deterministic_under_seed():
    works = [f"W/{i}" for i in range(40)]
    assert split_works(works, 0.1, 0.1, seed=7) == split_works(list(reversed(works)), 0.1, 0.1, seed=7)
    assignments = {tuple(sorted(split_works(works, 0.1, 0.1, seed=s).items())) for s in range(5)}
    assert len(assignments) > 1  # the seed matters
    counts = pd.Series(split_works(works, 0.1, 0.1, seed=7)).value_counts()
    assert (counts["val"], counts["test"], counts["train"]) == (4, 4, 32)


@pytest.mark.parametrize("n_works", [1, 2, 3, 5])
def test_tiny_corpora_still_get_val_and_test(n_works):
    splits = pd.Series(split_works([f"w{i}" for i in range(n_works)], 0.1, 0.1, seed=0)).value_counts()
    assert splits.get("train", 0) >= 1
    if n_works >= 3:
        assert splits.get("val", 0) >= 1 and splits.get("test", 0) >= 1
    if n_works == 2:
        assert splits.get("val", 0) == 1


def test_all_rare_composers_is_a_clear_error(tmp_path):
    pieces = [(f"C{i}/p", f"Composer {i}", f"C{i}/p") for i in range(4)]
    with pytest.raises(MozartError, match=r"no composer has prepare.min_pieces = 5 pieces.*lower prepare.min_pieces"):
        run_prepare(tmp_path, pieces)
    assert not (tmp_path / "prepared").exists()  # nothing half-written


def test_rare_composers_share_other_beside_major_ones(tmp_path):
    pieces = [(f"Bach/p{i}", "Bach", f"Bach/p{i}") for i in range(5)]
    pieces += [(f"C{i}/p", f"Composer {i}", f"C{i}/p") for i in range(3)]
    _, meta, composers = run_prepare(tmp_path, pieces)
    assert composers["names"] == ["<unconditional>", "Bach", "OTHER"]
    assert set(meta.loc[meta["composer"] != "Bach", "composer_id"]) == {2}


def test_data_json_accounting_adds_up(tmp_path):
    pieces = asap_like_pieces(n_works=6, performances=2)
    extra = [{"source_path": "src/dup.mid", "piece_id": "", "work_id": "Bach/work0", "composer": "Bach",
              "title": "dup", "content_hash": "0" * 64, "status": "duplicate", "reason": "duplicate of x",
              "out_path": ""},
             {"source_path": "src/bad.mid", "piece_id": "", "work_id": "Bach/bad", "composer": "Bach",
              "title": "bad", "content_hash": "", "status": "rejected", "reason": "not a MIDI file", "out_path": ""}]
    summary, meta, _ = run_prepare(tmp_path, pieces, cfg=PrepareConfig(min_pieces=3), organize_extra=extra,
                                   tokenize_rejects=("Satie/gnossienne",))
    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert data == summary.data
    assert data["files_in"] == len(pieces) + 2
    assert (data["accepted"], data["duplicates"], data["rejected"]) == (len(pieces) - 1, 1, 2)
    assert data["accepted"] + data["duplicates"] + data["rejected"] == data["files_in"]
    assert {(r["source_path"], r["stage"]) for r in data["rejected_list"]} == {
        ("src/bad.mid", "organize"), ("src/Satie/gnossienne.mid", "tokenize")}
    assert "Satie/gnossienne" not in set(meta["piece_id"])
    for split in ("train", "val", "test"):
        assert data[f"tokens_{split}"] == meta.loc[meta["split"] == split, "n_tokens"].sum()


def test_empty_corpus_and_bad_fractions_are_clear_errors(tmp_path):
    pieces = [("A/p", "A", "A/p")]
    with pytest.raises(MozartError, match="no accepted pieces"):
        run_prepare(tmp_path / "one", pieces, tokenize_rejects=("A/p",))
    with pytest.raises(ConfigError, match="val_fraction"):
        run_prepare(tmp_path / "two", pieces, cfg=PrepareConfig(val_fraction=0.6, test_fraction=0.5))
    with pytest.raises(MozartError, match="run the organize stage"):
        prepare(tmp_path / "nowhere", tmp_path / "nothing", tmp_path / "p", tmp_path / "m.json", PrepareConfig(), 0)


def test_unknown_composer_pieces_train_the_unconditional_id_only(tmp_path):
    pieces = asap_like_pieces(n_works=6, performances=2)
    pieces += [(f"Unknown/carol{i}", "Unknown", f"Unknown/carol{i}") for i in range(7)]  # more than min_pieces
    summary, meta, composers = run_prepare(tmp_path, pieces, cfg=PrepareConfig(min_pieces=3))
    assert "Unknown" not in composers["names"] and "Unknown" not in composers["composer_to_id"]
    assert set(meta.loc[meta["composer"] == "Unknown", "composer_id"]) == {composers["unconditional_id"]} == {0}
    assert (meta.loc[meta["composer"] != "Unknown", "composer_id"] > 0).all()
    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert data["unknown_composer"] == 7 and data["composers"] == 5  # Bach, Beethoven, Chopin, Satie, Gustav Lange
    assert data["accepted"] == len(pieces)  # they are still pieces: accounting unchanged
    assert "Unknown" in set(meta["composer"])  # and still in the training data
    assert "(7 without a composer: id 0 only)" in summary.line()


def test_a_corpus_of_only_unknown_composers_is_a_clear_error(tmp_path):
    pieces = [(f"Unknown/p{i}", "Unknown", f"Unknown/p{i}") for i in range(6)]
    with pytest.raises(MozartError, match="every accepted piece has an unknown composer.*organize.aliases"):
        run_prepare(tmp_path, pieces)


def test_data_json_counts_zero_unknown_composers_when_every_label_is_a_composer(tmp_path):
    run_prepare(tmp_path, asap_like_pieces())
    assert json.loads((tmp_path / "metrics" / "data.json").read_text())["unknown_composer"] == 0


def test_the_store_is_memory_mapped_and_a_truncated_token_file_is_a_clear_error(tmp_path):
    from mozart.data.store import TokenStore, token_path

    run_prepare(tmp_path, asap_like_pieces(), cfg=PrepareConfig(min_pieces=5, val_fraction=0.2, test_fraction=0.2))
    store = TokenStore(tmp_path / "prepared", "train")
    assert isinstance(store.tokens.base, np.memmap) and not store.tokens.flags.writeable  # mapped, not loaded
    path = token_path(tmp_path / "prepared", "train")
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated; rerun `dvc repro prepare`"):
        TokenStore(tmp_path / "prepared", "train")
