"""The rating term (contract/rating_model.py) on planted movie factors: comedies lie along one factor, action
films along the other, so what a user's stars say about each kind is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.rating_model import (
    load_rating_model,
    new_rating_model,
    served_candidates,
    served_queries,
    write_rating_model,
)
from contract.user_ratings import NO_VALUE, build_user_ratings

COMEDIES, ACTION = np.arange(0, 5), np.arange(5, 10)  # movie rows


@pytest.fixture
def planted():  # type: ignore[no-untyped-def]
    factors = np.zeros((10, 2))
    factors[COMEDIES, 0], factors[ACTION, 1] = 1.0, 1.0
    bias = np.linspace(-0.2, 0.2, 10)
    candidates = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    return new_rating_model(3.5, bias, factors, reg=1.0, weight=0.2, candidates=candidates), candidates


def test_a_hated_kind_is_predicted_below_the_same_kind_unrated(planted) -> None:  # type: ignore[no-untyped-def]
    model, _ = planted
    loved_only = model.user_part(COMEDIES[:3], np.full(3, 5.0))
    loved_and_hated = model.user_part(np.r_[COMEDIES[:3], ACTION[:3]], np.r_[np.full(3, 5.0), np.full(3, 1.0)])
    items = model.item_part(10)
    unrated_action, unrated_comedy = ACTION[3:], COMEDIES[3:]
    assert (items[unrated_action] @ loved_and_hated < items[unrated_action] @ loved_only).all()
    assert (items[unrated_comedy] @ loved_and_hated > items[unrated_action] @ loved_and_hated).all()
    # The same films with the stars swapped: the unrated action films now come first. Stars, not ids, decide.
    swapped = model.user_part(np.r_[COMEDIES[:3], ACTION[:3]], np.r_[np.full(3, 1.0), np.full(3, 5.0)])
    assert (items[unrated_action] @ swapped > items[unrated_comedy] @ swapped).all()


def test_unknown_stars_and_movies_outside_the_model_are_left_out(planted) -> None:  # type: ignore[no-untyped-def]
    model, _ = planted
    nothing = model.user_part(np.array([], dtype=np.int64), np.array([]))
    assert nothing.tolist() == [1.0, 0.0, 0.0]
    ignored = model.user_part(np.array([0, 42, -1]), np.array([NO_VALUE, 5.0, 5.0]))
    assert ignored.tolist() == nothing.tolist()


def test_the_term_moves_each_users_scores_by_weight_of_their_own_spread(planted) -> None:  # type: ignore[no-untyped-def]
    model, candidates = planted
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(5, 4)).astype(np.float32) * np.array([[0.1], [1], [3], [10], [30]], np.float32)
    parts = np.stack([model.user_part(rng.choice(10, 4, replace=False), rng.integers(1, 6, 4)) for _ in range(5)])
    served = served_queries(queries, model, parts)
    scores = served @ served_candidates(candidates, model).T
    tower = queries @ candidates.T
    np.testing.assert_allclose((scores - tower).std(axis=1), 0.2 * tower.std(axis=1), rtol=1e-4)
    np.testing.assert_allclose(served[:, :4], queries)  # the tower's part is untouched


def test_added_movies_have_no_term_and_a_larger_catalogue_keeps_each_movie_its_own(planted) -> None:  # type: ignore[no-untyped-def]
    model, candidates = planted
    grown = served_candidates(np.vstack([candidates, np.ones((2, 4), np.float32)]), model)
    assert grown.shape == (12, 4 + model.width)
    assert not grown[10:, 4:].any()
    rows = np.array([3, 0, 11, 5, 7, 8, 1, 2, 4, 6])
    moved = model.moved(rows, 12)
    np.testing.assert_array_equal(moved.item_part(12)[rows], model.item_part(10))
    assert not moved.item_part(12)[[9, 10]].any()


def test_a_fold_in_over_spans_is_the_same_as_one_user_at_a_time(planted) -> None:  # type: ignore[no-untyped-def]
    model, _ = planted
    ratings = build_user_ratings(
        {"user_id": np.array([1, 1, 2, 2, 2]), "timestamp": np.arange(5), "rating": np.array([5, 1, 2, 4, 5.0])},
        np.array([0, 6, 1, 7, 2]),
    )
    parts = model.user_parts(ratings, np.array([0, 2, 3]), np.array([2, 5, 3]))
    np.testing.assert_allclose(parts[0], model.user_part(ratings.movie_rows[0:2], ratings.values[0:2]))
    np.testing.assert_allclose(parts[1], model.user_part(ratings.movie_rows[2:5], ratings.values[2:5]))
    assert parts[2].tolist() == [1.0, 0.0, 0.0]


def test_a_written_term_reads_back_and_a_wrong_shape_is_refused(planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _ = planted
    path = tmp_path / "rating_model.npz"
    write_rating_model(path, model)
    back = load_rating_model(path, 10, 4)
    np.testing.assert_array_equal(back.item_part(10), model.item_part(10))
    assert (back.mean, back.reg, back.weight) == (model.mean, model.reg, model.weight)
    with pytest.raises(ValueError, match="item_bias"):
        load_rating_model(path, 11, 4)
    with pytest.raises(ValueError, match="tower_covariance"):
        load_rating_model(path, 10, 5)
