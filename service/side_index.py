"""An exact side index beside a version's ScaNN searcher: movies added since the version merged into each search.

ScaNN's index is built offline and holds the version's movies. Movies added through POST /movies are few
next to them, so each search also scores them exactly (one matrix product) and merges the two best-first
lists: the added movies are found exactly, and the version's movies as well as its index finds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
        """Rows int64 and dot-product scores float32 [batch, final_num_neighbors], best first, NaN-padded."""
        depth = final_num_neighbors
        rows, scores = self.base.search_batched(queries, final_num_neighbors=min(depth, self.base_count), **params)
        side_scores = np.asarray(queries, dtype=np.float32) @ self.side.T  # [batch, s]
        take = min(depth, len(self.side))
        if take < len(self.side):
            top = np.argpartition(-side_scores, take - 1, axis=1)[:, :take]
        else:
            top = np.broadcast_to(np.arange(len(self.side)), side_scores.shape)
        all_rows = np.concatenate([np.asarray(rows, dtype=np.int64), top + self.base_count], axis=1)
        all_scores = np.concatenate(
            [np.asarray(scores, dtype=np.float32), np.take_along_axis(side_scores, top, axis=1)], axis=1
        )
        key = np.where(np.isfinite(all_scores), all_scores, -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")[:, :depth]
        return np.take_along_axis(all_rows, order, axis=1), np.take_along_axis(all_scores, order, axis=1)
