"""An empty store entry answers with its own width: 4 probabilities, or no columns for an embedding."""
from __future__ import annotations

import numpy as np

from benchmark.execution.store import PredictionStore


def test_empty_embedding_entry_has_no_made_up_width(tmp_path):
    fps = np.arange(5, dtype=np.int64)
    store = PredictionStore(tmp_path)
    emb = store.entry("ab" * 32, fps, width=None)
    rows, values = emb.stored(np.arange(5))
    assert rows.shape == (0,) and values.shape == (0, 0)  # was (0, 4): a probability row's width
    assert store.entry("cd" * 32, fps).stored(np.arange(5))[1].shape == (0, 4)
    emb.write_chunk(np.array([1, 2]), np.ones((2, 7)))
    rows, values = emb.stored(np.array([0, 3]))  # stored pieces, none of these rows: their width
    assert rows.shape == (0,) and values.shape == (0, 7)
    assert emb.stored(np.arange(5))[1].shape == (2, 7)
