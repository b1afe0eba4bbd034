"""EASE's item-item weights at low rank: a fixed prior the towers' item-item channel starts from.

Why: on protocol T the closed-form EASE (Steck, WWW 2019) ranks held-out ratings better than the trained
towers, and blending the two beats both (benchmarks/ease_blend.py: T top-10 0.156 -> 0.181, seed 42); its
weights at rank 128 keep the whole gain. A rank-r factorisation B ~ L R^T is two tables of r columns, so it
fits the two-tower shape: the query pools its history's rows of L (as the item-item channel pools its own
table), the candidate adds its row of R, and their dot product is the history's EASE score. The tables stay
fixed while the towers train around them; a learned gain sets the channel's weight against the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.user_ratings import UserRatings

_USER_CHUNK = 2048  # users whose rating rows are densified at once to build the movie-movie Gram matrix
_SCALE_USERS = 2000  # users whose pooled scores set the prior's scale
_POWER_ITERATIONS = 4  # randomized SVD: enough for the leading 128 of a 1,682-movie EASE to match numpy's


@dataclass(frozen=True)
class ItemItemPrior:
    """query @ candidate.T ~ EASE's weights / scale, both float32 [num_movies, rank] in catalogue order; a
    movie outside the `max_movies` most rated has zero rows (no prior), as has a movie added later."""

    query: np.ndarray
    candidate: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.query.shape[1])


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE's item-item weights B = I - P / diag(P), P = (G + lam I)^-1 for the Gram matrix G = X^T X, with
    B's diagonal zero: column j is movie j's ridge regression on every other movie."""
    inverse = np.linalg.inv(gram.astype(np.float64) + lam * np.eye(len(gram)))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def gram_matrix(known: UserRatings, columns: np.ndarray) -> np.ndarray:
    """float64 [k, k]: how many users rated both movies, for the movie rows `columns` (others ignored).

    Dense rows of a few thousand users at a time: memory stays chunk x k, whatever the number of users."""
    position = np.full(int(known.movie_rows.max(initial=-1)) + 1, -1, dtype=np.int64)
    position[columns[columns < len(position)]] = np.arange(np.count_nonzero(columns < len(position)))
    gram = np.zeros((len(columns), len(columns)), dtype=np.float64)
    user_of = np.repeat(np.arange(len(known.user_ids)), np.diff(known.indptr))
    where = position[known.movie_rows]
    for first in range(0, len(known.user_ids), _USER_CHUNK):
        last = min(first + _USER_CHUNK, len(known.user_ids))
        span = slice(int(known.indptr[first]), int(known.indptr[last]))
        chunk = np.zeros((last - first, len(columns)), dtype=np.float32)
        keep = where[span] >= 0
        chunk[user_of[span][keep] - first, where[span][keep]] = 1.0
        gram += chunk.T @ chunk  # float32 counts of at most _USER_CHUNK: exact
    return gram


def low_rank(weights: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(left [n, r], right [n, r]) with left @ right.T the best rank-r approximation of `weights`, by
    randomized SVD (Halko et al. 2011): a full SVD of a 20,000-movie matrix would take the better part of an
    hour on two cores, a few power iterations of a random probe take seconds."""
    n = len(weights)
    if rank >= n:
        return weights.copy(), np.eye(n)
    rng = np.random.default_rng(seed)
    probe = weights @ rng.standard_normal((n, min(n, rank + 16)))
    for _ in range(_POWER_ITERATIONS):
        probe, _ = np.linalg.qr(weights @ (weights.T @ np.linalg.qr(probe)[0]))
    basis, _ = np.linalg.qr(probe)
    u, values, vt = np.linalg.svd(basis.T @ weights, full_matrices=False)
    return (basis @ u[:, :rank]) * values[:rank], vt[:rank].T


def item_item_prior(
    known: UserRatings,
    num_movies: int,
    rank: int,
    lam: float,
    max_movies: int,
    seed: int,
    popularity: float = 0.0,
) -> ItemItemPrior:
    """EASE on `known` (every rating alike: ease_blend.py found no gain in reading recency into it), over its
    `max_movies` most-rated movies, at rank `rank`, scaled so that a user's mean-pooled prior scores spread
    by 1 (their standard deviation over the movies, averaged over users): the channel's learned gain then
    starts where the blend benchmark's alpha of 1 was. With `popularity` p > 0 each target movie's column of
    weights is divided by its rating count to the power p, so the prior stops favouring what everyone rates
    (a history of four Disney films otherwise pulls in Star Wars)."""
    counts = np.bincount(known.movie_rows, minlength=num_movies)
    columns = np.sort(np.argsort(-counts, kind="stable")[: min(max_movies, num_movies)])
    columns = columns[counts[columns] > 0]
    weights = ease_weights(gram_matrix(known, columns), lam)
    if popularity:
        weights /= counts[columns].astype(np.float64)[None, :] ** popularity
    left, right = low_rank(weights, rank, seed)
    query = np.zeros((num_movies, rank), dtype=np.float32)
    candidate = np.zeros((num_movies, rank), dtype=np.float32)
    width = min(rank, left.shape[1])
    query[columns, :width], candidate[columns, :width] = left[:, :width], right[:, :width]
    scale = _pooled_spread(known, query, candidate, seed)
    return ItemItemPrior(query=query / np.float32(scale), candidate=candidate)


def _pooled_spread(known: UserRatings, query: np.ndarray, candidate: np.ndarray, seed: int) -> float:
    """Mean over (up to _SCALE_USERS) users of the standard deviation of their mean-pooled prior scores."""
    users = np.flatnonzero(np.diff(known.indptr) > 0)
    users = np.random.default_rng(seed).permutation(users)[:_SCALE_USERS]
    if not len(users):  # nobody's ratings reach the prior's stars: all zeros, nothing to scale
        return 1.0
    pooled = np.stack([query[known.movie_rows[known.indptr[u] : known.indptr[u + 1]]].mean(axis=0) for u in users])
    spread = float((pooled @ candidate.T).std(axis=1).mean())
    return spread if spread > 0 else 1.0
