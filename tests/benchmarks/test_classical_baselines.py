"""The classical baselines docs/results.md compares the model with: EASE is its closed form, the history weights
are what the service would know, newest first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.classical_baselines import ease, item_knn, weighted_history
from contract.user_ratings import build_user_ratings
from training.evaluate import HeldOutQueries
from training.folds import Fold


def test_ease_is_each_movies_ridge_regression_on_every_other_movie() -> None:
    rng = np.random.default_rng(0)
    matrix = (rng.random((30, 6)) < 0.4).astype(np.float32)
    weights = ease(matrix, lam=2.0)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    for j in range(6):  # column j = argmin ||X_j - X_others w||^2 + 2 ||w||^2, solved directly
        others = [i for i in range(6) if i != j]
        x = matrix[:, others].astype(np.float64)
        direct = np.linalg.solve(x.T @ x + 2.0 * np.eye(5), x.T @ matrix[:, j])
        np.testing.assert_allclose(weights[others, j], direct, rtol=1e-4, atol=1e-5)


def test_item_knn_is_the_cosine_of_co_ratings() -> None:
    matrix = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=np.float32)
    similarity = item_knn(matrix)
    np.testing.assert_array_equal(np.diag(similarity), 0.0)
    assert similarity[0, 1] == similarity[1, 0] > similarity[1, 2] > similarity[0, 2] == 0.0


def test_the_history_weighs_the_exclusion_span_newest_first() -> None:
    ratings = pd.DataFrame({"user_id": [1, 1, 1, 2], "timestamp": [10, 20, 30, 5]})
    known = build_user_ratings(ratings, np.array([0, 2, 3, 1]))  # user 1 rated movies 0, 2, 3 in that order
    held_out = HeldOutQueries(
        targets=np.array([1, 0, 2]),
        known=known,
        exclude_start=np.array([0, 0, 3]),
        exclude_end=np.array([3, 2, 3]),  # all three; the first two; nothing
        fallback=np.array([False, False, True]),
    )
    fold = Fold(data=None, train=ratings, known=known, popularity=np.arange(4), held_out=held_out)  # type: ignore[arg-type]
    rows = weighted_history(fold, num_movies=4, decay=0.5)
    np.testing.assert_allclose(rows, [[0.25, 0, 0.5, 1.0], [0.5, 0, 1.0, 0], [0, 0, 0, 0]])


def test_a_liked_only_history_reads_only_ratings_of_four_stars_or_more() -> None:
    ratings = pd.DataFrame({"user_id": [1, 1, 1], "timestamp": [10, 20, 30], "rating": [5.0, 1.0, 4.0]})
    known = build_user_ratings(ratings, np.array([0, 2, 3]))  # 0 loved, 2 hated, 3 liked
    held_out = HeldOutQueries(
        targets=np.array([1]),
        known=known,
        exclude_start=np.array([0]),
        exclude_end=np.array([3]),
        fallback=np.array([False]),
    )
    fold = Fold(data=None, train=ratings, known=known, popularity=np.arange(4), held_out=held_out)  # type: ignore[arg-type]
    np.testing.assert_allclose(weighted_history(fold, 4, decay=0.5), [[0.25, 0, 0.5, 1.0]])
    np.testing.assert_allclose(weighted_history(fold, 4, decay=0.5, liked_only=True), [[0.25, 0, 0, 1.0]])
