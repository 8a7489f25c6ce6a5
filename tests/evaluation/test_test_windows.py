"""The evaluate stage's test windows come from the memory-mapped token store and read only the chosen windows."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from mozart.data.store import TokenStoreReader, VocabInfo, write_store
from mozart.evaluation.stage import context_windows

BOS = 1


def every_window(pieces: list[list[int]], composer_ids: list[int], context: int) -> list[tuple[list[int], int]]:
    """The definition: `[BOS] + tokens` cut at 0, context, 2 context, ..., keeping windows of at least 2 tokens."""
    windows = []
    for tokens, composer_id in zip(pieces, composer_ids):
        ids = [BOS] + tokens
        for start in range(0, max(1, len(ids) - 1), context):
            if len(ids[start:start + context + 1]) >= 2:
                windows.append((ids[start:start + context + 1], composer_id))
    return windows


def test_windows_are_the_seeded_choice_among_all_windows_of_the_rows(tmp_path):
    rng = np.random.default_rng(0)
    pieces = [rng.integers(3, 200, size=n).tolist() for n in (0, 1, 4, 5, 9, 12, 3)]
    composer_ids = [1, 2, 1, 2, 1, 2, 1]
    rows = write_store(tmp_path, ["test"] * len(pieces), pieces, composer_ids, VocabInfo(220, 0, BOS, 2, {}))
    frame = pd.DataFrame({"split": "test", "store_row": rows, "composer_id": composer_ids})
    reader = TokenStoreReader(tmp_path)
    config = SimpleNamespace(context=4, bos_id=BOS)
    expected = every_window(pieces, composer_ids, 4)
    assert context_windows(frame, reader, config, 1000, seed=3) == expected  # all of them, in row order
    chosen = context_windows(frame, reader, config, 5, seed=3)
    order = np.random.default_rng(3).permutation(len(expected))[:5]
    assert chosen == [expected[i] for i in sorted(order)]
    subset = frame.iloc[[2, 4]]  # a composer's rows: windows of those rows only
    assert context_windows(subset, reader, config, 1000, seed=0) == every_window([pieces[2], pieces[4]], [1, 1], 4)
