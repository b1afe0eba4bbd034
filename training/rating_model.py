"""Fits the rating term (contract/rating_model.py): a biased matrix factorisation of the training stars.

Alternating least squares in NumPy: each user's factors and bias, then each movie's, by ridge regression on
the residual stars. On ML-100K ten rounds take about a second; at ML-25M's shape 137 s, 0.4 GB over the
ratings themselves (benchmarks/rating_term_scale.py, docs/scale.md).
"""

from __future__ import annotations

import numpy as np

from contract.rating_model import BIAS_PENALTY, RatingModel, new_rating_model, ridge_solve
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
    user_bias_penalty: float = BIAS_PENALTY,
) -> RatingModel | None:
    """The rating term for a fold's training ratings and its candidate embeddings; None when `weight` is 0.
    `demote`: (demote_pool, demote_margin, demote_penalty) of the served re-ordering (contract/rating_model.py);
    `user_bias_penalty`: the weight of a user's bias when they are folded in (RatingModel.user_bias_penalty).

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
    for _ in range(ROUNDS):
        solved = _ridge(by_user, item_factors, movies, residual - item_bias[movies], reg)
        user_factors, user_bias = solved[:, :-1], solved[:, -1]
        solved = _ridge(by_movie, user_factors, users, residual - user_bias[users], reg)
        item_factors, item_bias = solved[:, :-1], solved[:, -1]
    return new_rating_model(mean, item_bias, item_factors, reg, weight, candidates, demote, user_bias_penalty)


def _groups(keys: np.ndarray, count: int) -> list[np.ndarray]:
    """The positions of each key 0..count-1 in `keys`."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.cumsum(np.bincount(keys, minlength=count))[:-1])


def _ridge(groups: list[np.ndarray], factors: np.ndarray, other: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """One ridge solution per group of rows of y on [factors[other[rows]], 1] (the last column a bias); a group
    without rows is 0. Each group's design is gathered alone: the whole one, every rating's row in float64, was
    3.4 GB at ML-25M size, twice a round."""
    out = np.zeros((len(groups), factors.shape[1] + 1))
    for k, rows in enumerate(groups):
        if len(rows):
            x = np.hstack([factors[other[rows]], np.ones((len(rows), 1))])
            out[k] = ridge_solve(x, y[rows], reg)
    return out
