"""Fits the rating term (contract/rating_model.py): a biased matrix factorisation of the training stars.

Alternating least squares in NumPy: each user's factors and bias, then each movie's, by ridge regression on
the residual stars. On ML-100K ten rounds take about a second; at ML-25M's shape 248 s and 8.0 GB peak
(benchmarks/rating_term_scale.py, docs/scale.md), the per-round gathers of every rating's row in float64
being most of the memory.
"""

from __future__ import annotations

import numpy as np

from contract.rating_model import RatingModel, new_rating_model, ridge_solve
from contract.user_ratings import UserRatings

ROUNDS = 10


def fit_rating_model(
    known: UserRatings,
    candidates: np.ndarray,
    factors: int,
    reg: float,
    weight: float,
    seed: int,
    demote: tuple[int, float, float] = (0, 0.0, 0.0),
) -> RatingModel | None:
    """The rating term for a fold's training ratings and its candidate embeddings; None when `weight` is 0.
    `demote`: (demote_pool, demote_margin, demote_penalty) of the served re-ordering (contract/rating_model.py).

    Raises:
        ValueError: the ratings keep no stars.
    """
    if weight <= 0:
        return None
    if known.values is None:
        raise ValueError("the rating term is fit on stars; these ratings keep none")
    num_movies = len(candidates)
    movies = known.movie_rows.astype(np.int64)
    users = np.repeat(np.arange(len(known.user_ids)), np.diff(known.indptr))
    stars = known.values.astype(np.float64)
    mean = float(stars.mean()) if len(stars) else 0.0
    residual = stars - mean
    rng = np.random.default_rng(seed)
    item_factors, item_bias = rng.normal(0.0, 0.1, (num_movies, factors)), np.zeros(num_movies)
    by_user, by_movie = _groups(users, len(known.user_ids)), _groups(movies, num_movies)
    ones = np.ones((len(stars), 1))
    for _ in range(ROUNDS):
        solved = _ridge(by_user, np.hstack([item_factors[movies], ones]), residual - item_bias[movies], reg)
        user_factors, user_bias = solved[:, :-1], solved[:, -1]
        solved = _ridge(by_movie, np.hstack([user_factors[users], ones]), residual - user_bias[users], reg)
        item_factors, item_bias = solved[:, :-1], solved[:, -1]
    return new_rating_model(mean, item_bias, item_factors, reg, weight, candidates, demote)


def _groups(keys: np.ndarray, count: int) -> list[np.ndarray]:
    """The positions of each key 0..count-1 in `keys`."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.cumsum(np.bincount(keys, minlength=count))[:-1])


def _ridge(groups: list[np.ndarray], x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """One ridge solution of (x, y) per group of rows; x's last column is a bias. A group without rows is 0."""
    out = np.zeros((len(groups), x.shape[1]))
    for k, rows in enumerate(groups):
        if len(rows):
            out[k] = ridge_solve(x[rows], y[rows], reg)
    return out
