"""Fitting the rating term (training/rating_model.py) on planted stars: two kinds of movie, two kinds of user,
each loving their own kind and disliking the other; one movie everybody loves and one everybody hates."""

from __future__ import annotations

import numpy as np
import pytest

from contract.user_ratings import build_user_ratings
from training.rating_model import fit_rating_model

KINDS = np.arange(20) % 2  # movie row -> kind; rows 18 and 19 are everybody's best and worst


def _planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    users, movies, stars = [], [], []
    for user in range(40):
        for movie in [*rng.choice(18, 12, replace=False).tolist(), 18, 19]:
            users.append(user)
            movies.append(movie)
            stars.append(5.0 if movie == 18 else 1.0 if movie == 19 else 5.0 if KINDS[movie] == user % 2 else 2.0)
    return np.array(users), np.array(movies), np.array(stars)


def test_the_fit_learns_each_movies_standing_and_each_users_kind() -> None:
    users, movies, stars = _planted()
    known = build_user_ratings({"user_id": users, "timestamp": np.arange(len(users)), "rating": stars}, movies)
    candidates = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    model = fit_rating_model(known, candidates, factors=4, reg=1.0, weight=0.2, seed=0)
    assert model is not None and model.width == 5 and model.weight == 0.2
    assert model.item_bias[18] > model.item_bias[:18].max() and model.item_bias[19] < model.item_bias[:18].min()
    # A new user of kind 0, folded in from three ratings, is predicted above for kind 0's other movies.
    user = model.user_part(np.array([0, 2, 1]), np.array([5.0, 5.0, 2.0]))
    predicted = model.item_part(20) @ user
    assert predicted[4:18:2].min() > predicted[5:18:2].max()


def test_no_weight_means_no_term_and_no_stars_is_an_error() -> None:
    users, movies, stars = _planted()
    candidates = np.zeros((20, 3), np.float32)
    rated = build_user_ratings({"user_id": users, "timestamp": np.arange(len(users)), "rating": stars}, movies)
    assert fit_rating_model(rated, candidates, factors=4, reg=1.0, weight=0.0, seed=0) is None
    unrated = build_user_ratings({"user_id": users, "timestamp": np.arange(len(users))}, movies)
    with pytest.raises(ValueError, match="stars"):
        fit_rating_model(unrated, candidates, factors=4, reg=1.0, weight=0.2, seed=0)
