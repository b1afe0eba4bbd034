"""The rating term (contract/rating_model.py) on planted movie factors: comedies lie along one factor, action
films along the other, so what a user's stars say about each kind is known."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from contract.rating_model import (
    BIAS_PENALTY,
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


def _demoting(model, pool: int, margin: float, penalty: float):  # type: ignore[no-untyped-def]
    return dataclasses.replace(model, demote_pool=pool, demote_margin=margin, demote_penalty=penalty)


def test_a_movie_the_user_will_dislike_goes_last_within_the_pool_and_the_rest_stay(planted) -> None:  # type: ignore[no-untyped-def]
    model, candidates = planted
    model = _demoting(model, pool=4, margin=0.25, penalty=1e3)
    # Loves comedies, hates action films.
    part = model.user_part(np.r_[COMEDIES[:2], ACTION[:2]], np.r_[np.full(2, 5.0), np.full(2, 1.0)])
    query = served_queries(np.ones((1, 4), np.float32), model, part[None, :])[0]
    served = served_candidates(candidates, model)
    rows = np.array([ACTION[3], COMEDIES[3], ACTION[4], COMEDIES[4], ACTION[2], COMEDIES[2]])  # best first
    scores = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], np.float32)
    reranked, rescored = model.rerank(query, rows, scores, served)
    assert reranked[:2].tolist() == [COMEDIES[3], COMEDIES[4]]  # the pool: comedies first, in their order
    assert set(reranked[2:4].tolist()) == {ACTION[3], ACTION[4]}  # then its action films, still in it
    assert reranked[4:].tolist() == [ACTION[2], COMEDIES[2]]  # below the pool nothing moves
    assert rescored[:2].tolist() == [5.0, 3.0]  # a movie not predicted below the margin keeps its score
    assert rescored[2:].tolist() == [2.0, 2.0, 2.0, 1.0]  # demoted below 2.0, shown at the next score after the pool
    # No pool: the search's order is the answer.
    same, _ = _demoting(model, 0, 0.25, 1e3).rerank(query, rows, scores, served)
    assert same.tolist() == rows.tolist()


def test_demotions_are_the_penalty_per_predicted_star_past_the_margin(planted) -> None:  # type: ignore[no-untyped-def]
    model, candidates = planted
    model = _demoting(model, pool=10, margin=0.5, penalty=2.0)
    part = model.user_part(np.r_[COMEDIES[:2], ACTION[:2]], np.r_[np.full(2, 5.0), np.full(2, 1.0)])
    query = served_queries(np.random.default_rng(3).normal(size=(1, 4)).astype(np.float32), model, part[None, :])
    scale = float(query[0, 4])  # s_u: the first of the term's columns is s_u * 1
    predicted = model.item_part(10).astype(np.float64) @ part  # stars above the user's own average
    expected = 2.0 * scale * np.maximum(-0.5 - predicted, 0.0)
    np.testing.assert_allclose(model.demotions(query, served_candidates(candidates, model))[0], expected, atol=1e-5)
    assert (expected[ACTION] > 0).all() and (expected[COMEDIES] == 0).all()  # only the hated kind is demoted


def test_the_demotion_is_written_and_a_term_written_before_it_reads_as_none(planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _ = planted
    path = tmp_path / "rating_model.npz"
    write_rating_model(path, _demoting(model, 30, 0.25, 10.0))
    back = load_rating_model(path, 10, 4)
    assert (back.demote_pool, back.demote_margin, back.demote_penalty) == (30, 0.25, 10.0)
    with np.load(path) as f:
        older = {name: f[name] for name in f.files if not name.startswith("demote_")}
    np.savez(path, **older)
    assert load_rating_model(path, 10, 4).demote_pool == 0


def test_stars_all_alike_say_which_movies_only_when_the_users_bias_is_weighed(planted) -> None:  # type: ignore[no-untyped-def]
    """Three action films at 1 star: with the bias barely weighed (the fit's) it takes the whole shortfall and
    the other action films are predicted like the comedies; weighed like p_u, they are predicted below them,
    and the same films at 5 stars above them."""
    model, _ = planted
    items = model.item_part(10)
    hated, loved = np.full(3, 1.0), np.full(3, 5.0)
    free = model.user_part(ACTION[:3], hated)
    assert np.abs(free[1:]).max() < 0.05
    weighed = dataclasses.replace(model, user_bias_penalty=1.0)
    for stars, sign in ((hated, -1.0), (loved, 1.0)):
        part = weighed.user_part(ACTION[:3], stars)
        gap = items[ACTION[3:]] @ part - (items[COMEDIES] @ part).max()
        assert (sign * gap > 0.2).all()


def test_a_popularity_answer_puts_what_the_user_will_dislike_last_within_the_pool(planted) -> None:  # type: ignore[no-untyped-def]
    model, candidates = planted
    model = dataclasses.replace(_demoting(model, pool=4, margin=0.25, penalty=10.0), user_bias_penalty=1.0)
    served = served_candidates(candidates, model)
    popular = np.array([ACTION[3], COMEDIES[3], ACTION[4], COMEDIES[4], ACTION[2], COMEDIES[2]])  # most rated first
    part = model.user_part(ACTION[:2], np.full(2, 1.0))  # hates action films, nothing else said
    answer = model.popular_rerank(part, popular, served)
    assert answer.tolist() == [COMEDIES[3], COMEDIES[4], ACTION[3], ACTION[4], ACTION[2], COMEDIES[2]]
    # No stars: nothing is predicted about the user beyond the movies' biases, which popularity reflects.
    assert model.popular_rerank(model.no_ratings, popular, served).tolist() == popular.tolist()
    assert _demoting(model, 0, 0.0, 10.0).popular_rerank(part, popular, served).tolist() == popular.tolist()


def test_the_user_bias_weight_is_written_and_one_written_before_it_reads_as_the_fits(planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _ = planted
    path = tmp_path / "rating_model.npz"
    write_rating_model(path, dataclasses.replace(model, user_bias_penalty=0.3))
    assert load_rating_model(path, 10, 4).user_bias_penalty == 0.3
    with np.load(path) as f:
        older = {name: f[name] for name in f.files if name != "user_bias_penalty"}
    np.savez(path, **older)
    assert load_rating_model(path, 10, 4).user_bias_penalty == BIAS_PENALTY
