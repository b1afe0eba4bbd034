"""The exact side index merged into a ScaNN search equals brute force over the version's and the added rows."""

from __future__ import annotations

import numpy as np
import pytest
import scann  # noqa: F401  # registers ScaNN's ops
from scann.scann_ops.py import scann_ops_pybind

from service.side_index import SideIndexSearcher, searcher_with_added


def brute_force_searcher(embeddings: np.ndarray) -> object:
    return scann_ops_pybind.builder(embeddings, 10, "dot_product").score_brute_force().build()


@pytest.mark.parametrize("base_exact", [False, True], ids=["side index merged", "exact searcher rebuilt"])
def test_the_search_with_added_rows_is_brute_force_over_all_rows(base_exact: bool) -> None:
    rng = np.random.default_rng(0)
    base, side = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(7, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    everything = np.concatenate([base, side])
    merged = searcher_with_added(brute_force_searcher(base), base_exact, everything, len(base))
    assert isinstance(merged, SideIndexSearcher) is not base_exact
    for depth in (1, 5, 30, 57):
        rows, scores = merged.search_batched(queries, final_num_neighbors=depth)
        exact = np.argsort(-(queries @ everything.T), axis=1, kind="stable")[:, :depth]
        assert rows.shape == scores.shape == (5, depth)
        np.testing.assert_array_equal(rows, exact)
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ everything.T, exact, axis=1), rtol=1e-5)
        one_rows, one_scores = merged.search_batched(queries[2:3], final_num_neighbors=depth)  # the 1-query path
        np.testing.assert_array_equal(one_rows, exact[2:3])
        np.testing.assert_allclose(one_scores, scores[2:3], rtol=1e-5)


def test_short_answers_stay_padded_at_the_end() -> None:
    rng = np.random.default_rng(1)
    base, side = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)

    class Padded:
        def search_batched(self, queries: np.ndarray, final_num_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.zeros((len(queries), final_num_neighbors), dtype=np.int64)
            return rows, np.full((len(queries), final_num_neighbors), np.nan, dtype=np.float32)

    rows, scores = SideIndexSearcher(Padded(), len(base), side).search_batched(base[:1], final_num_neighbors=3)
    assert set(rows[0, :2].tolist()) == {3, 4} and np.isfinite(scores[0, :2]).all() and np.isnan(scores[0, 2])
