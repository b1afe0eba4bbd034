"""recall_at_k, which export, the gate and the server's loader all measure an index with."""

from __future__ import annotations

import numpy as np
import pytest

from contract import contents
from contract.contents import recall_at_k


def test_recall_by_hand_and_the_same_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    embeddings, queries = rng.normal(size=(50, 4)), rng.normal(size=(9, 4))
    exact = np.argsort(-(queries @ embeddings.T), axis=1)[:, :5]
    found = exact.copy()
    found[:3, 0] = np.array([row[-1] for row in np.argsort(-(queries[:3] @ embeddings.T), axis=1)])  # 3 misses
    assert recall_at_k(exact, embeddings, queries, 5) == 1.0
    assert recall_at_k(found, embeddings, queries, 5) == pytest.approx(1 - 3 / 45)
    monkeypatch.setattr(contents, "RECALL_CHUNK_CELLS", 2 * 50)  # two queries at a time
    assert recall_at_k(found, embeddings, queries, 5) == pytest.approx(1 - 3 / 45)
