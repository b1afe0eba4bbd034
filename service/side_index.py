"""Searching a version's movies and the movies added since it: one exact searcher, or a side index merged in.

ScaNN's index is built offline and holds the version's movies. When that index is exact (brute force: every
catalogue up to `index_exact_max` movies, ML-100K's included), the served copy gets a new brute-force searcher
over the version's and the added movies together (`searcher_with_added`): building it takes milliseconds
(1.5 ms for 2,682 movies of width 96), and one search of a batch costs a quarter of a base search plus the
merge below (docs/serving-speed.md). Over an approximate index (tree + AH) rebuilding would mean training
the partitioning again, so each search also scores the added movies exactly (one matrix product) and merges
the two best-first lists: the added movies are found exactly, and the version's as well as its index finds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scann  # noqa: F401  # registers ScaNN's ops
from scann.scann_ops.py import scann_ops_pybind


def searcher_with_added(base: Any, base_exact: bool, embeddings: np.ndarray, base_count: int) -> Any:
    """A searcher over float32 `embeddings` [n, d], whose first `base_count` rows `base` already searches.

    Args:
        base_exact: `base` is brute force, so one brute-force searcher over every row answers as it would.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if base_exact:
        return exact_searcher(embeddings)
    return SideIndexSearcher(base, base_count, embeddings[base_count:])


def exact_searcher(embeddings: np.ndarray) -> Any:
    """Brute-force dot-product ScaNN searcher over float32 [n, d]: neighbours are row numbers, as the version's."""
    return scann_ops_pybind.builder(embeddings, min(10, len(embeddings)), "dot_product").score_brute_force().build()


class SideIndexSearcher:
    """`search_batched` like scann_ops_pybind's searcher, over the version's rows then the side rows after them."""

    def __init__(self, base: Any, base_count: int, side: np.ndarray) -> None:
        """
        Args:
            base: the version's ScaNN searcher, over rows 0 .. base_count - 1.
            side: float32 [s, d], the embeddings of rows base_count .. base_count + s - 1.
        """
        self.base = base
        self.base_count = base_count
        self.side = np.ascontiguousarray(side, dtype=np.float32)

    def search_batched(
        self, queries: np.ndarray, final_num_neighbors: int, **params: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows int64 and dot-product scores float32 [batch, final_num_neighbors], best first, NaN-padded.

        Only the added movies that beat a row's last base neighbour can enter its answer, so they alone are
        merged: usually few, and none at all (the base answer as it is) costs one product and one compare.
        """
        depth = final_num_neighbors
        rows, scores = self.base.search_batched(queries, final_num_neighbors=min(depth, self.base_count), **params)
        rows, scores = np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float32)
        full = rows.shape[1] == depth and bool(np.isfinite(scores[:, -1]).all())
        if len(rows) == 1:  # the usual batch at low load: the same merge in fewer (1-D) NumPy calls
            return self._merge_one(np.asarray(queries[0], dtype=np.float32), rows, scores, depth, full)
        side_scores = np.asarray(queries, dtype=np.float32) @ self.side.T  # [batch, s]
        floor = scores[:, -1:] if full else np.full((len(rows), 1), -np.inf, dtype=np.float32)
        entering = side_scores > floor
        width = min(depth, int(entering.sum(axis=1).max(initial=0)))
        if width == 0:
            return rows, scores
        entering_scores = np.where(entering, side_scores, -np.inf)
        if width < len(self.side):
            top = np.argpartition(-entering_scores, width - 1, axis=1)[:, :width]
        else:
            top = np.broadcast_to(np.arange(len(self.side)), side_scores.shape)
        all_rows = np.concatenate([rows, top + self.base_count], axis=1)
        all_scores = np.concatenate([scores, np.take_along_axis(entering_scores, top, axis=1)], axis=1)
        key = np.where(np.isfinite(all_scores), all_scores, -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")[:, :depth]
        merged_rows, merged_scores = (
            np.take_along_axis(all_rows, order, axis=1),
            np.take_along_axis(all_scores, order, axis=1),
        )
        merged_scores[np.isneginf(merged_scores)] = np.nan  # padding, as ScaNN pads
        return merged_rows, merged_scores

    def _merge_one(
        self, query: np.ndarray, rows: np.ndarray, scores: np.ndarray, depth: int, full: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        side_scores = self.side @ query
        entering = np.flatnonzero(side_scores > scores[0, -1]) if full else np.arange(len(self.side))
        if len(entering) == 0:
            return rows, scores
        if len(entering) > depth:
            entering = entering[np.argpartition(-side_scores[entering], depth - 1)[:depth]]
        all_rows = np.concatenate([rows[0], entering + self.base_count])
        all_scores = np.concatenate([scores[0], side_scores[entering]])
        order = np.argsort(-np.where(np.isfinite(all_scores), all_scores, -np.inf), kind="stable")[:depth]
        return all_rows[order][None, :], all_scores[order][None, :]
