"""A movie added to the catalogue borrows its EASE prior row from the known movies it reads most like.

The item-item channel's last `manifest.item_item_prior` columns are a fixed EASE prior (training/item_item_prior.py),
fit on ratings: the candidate tower gives a movie nobody rated zeros there. Every known movie's score carries the
prior's term and an added one's would not, so a fan of its kind would never see it (a Disney fan's top 100 lost an
added Toy Story 3 that way). So an added movie's prior columns are the cosine-weighted mean of the prior rows of the
`neighbours` known movies whose content embeddings (title, genres and year read with a blank id:
layout.CONTENT_EMBEDDINGS) are nearest its own content columns; its score's prior term is then the weighted mean of
theirs. Only movies with a prior row lend one, and only with a positive cosine.
"""

from __future__ import annotations

import numpy as np

from service.artifacts import ModelVersion
from service.similar import unit_rows


def borrowed_rows(
    added_content: np.ndarray, known_content: np.ndarray, known_prior: np.ndarray, neighbours: int
) -> np.ndarray:
    """float32 [added, R]: each added movie's prior row, the mean of its `neighbours` nearest lenders' rows
    weighted by cosine.

    Args:
        added_content: float32 [added, c], the added movies' content columns.
        known_content: float32 [known, c], the known movies' content embeddings.
        known_prior: float32 [known, R], their prior rows (zeros: the movie has none and lends nothing).
        neighbours: lenders per added movie.
    """
    out = np.zeros((len(added_content), known_prior.shape[1]), dtype=np.float32)
    lenders = np.flatnonzero(np.any(known_prior != 0, axis=1))
    if not len(lenders) or not len(added_content) or neighbours <= 0:
        return out
    cosines = unit_rows(added_content) @ unit_rows(known_content[lenders]).T  # [added, lenders]
    k = min(neighbours, len(lenders))
    nearest = np.argpartition(-cosines, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(cosines, nearest, axis=1), 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
    out[:] = np.einsum("ak,akr->ar", weights, known_prior[lenders][nearest])
    return out


def with_borrowed_prior(base: ModelVersion, added: np.ndarray, neighbours: int) -> np.ndarray:
    """`added` (float32 [n, d], movies through `base`'s candidate tower) with their prior columns borrowed from
    `base`'s movies; unchanged where `base` has no prior or no content embeddings."""
    prior = base.manifest.item_item_prior
    if not prior or base.content_embeddings is None or not len(added):
        return added
    d = base.candidate_embeddings.shape[1]
    content_columns = d - base.manifest.item_item_dim
    known = base.content_embeddings[: base.num_movies]
    out = added.copy()
    out[:, d - prior :] = borrowed_rows(
        added[:, :content_columns], known, base.candidate_embeddings[: len(known), d - prior :], neighbours
    )
    return out
