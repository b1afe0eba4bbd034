"""Offline metrics and histories against hand-computed examples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from contract.rating_model import new_rating_model
from contract.user_ratings import PAD, UserRatings, build_user_ratings, span_pairs
from training import evaluate as evaluate_module
from training.dataset import split_ratings
from training.evaluate import (
    HeldOutQueries,
    accuracy_table,
    baseline_ranks,
    model_ranks,
    popularity_ranking,
    served_vectors,
    target_ranks,
)


def _ratings(rows: list[tuple[int, int, int]]) -> UserRatings:
    """(user_id, movie row, timestamp) triples."""
    frame = pd.DataFrame(rows, columns=["user_id", "movie_row", "timestamp"])
    return build_user_ratings(frame, frame["movie_row"].to_numpy())


def _held_out(
    known: UserRatings, users: list[int], targets: list[int], times: list[int], before: bool
) -> HeldOutQueries:
    users_a, times_a = np.array(users, dtype=np.int64), np.array(times, dtype=np.int64)
    start, end = known.spans_before(users_a, times_a) if before else known.spans(users_a)
    return HeldOutQueries(np.array(targets), known, start, end, fallback=known.positions(users_a) < 0)


def test_ranks_by_hand() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    # query 0: target movie 1 (0.5) is beaten by 0.9 and 0.7; query 1: target movie 3 is the best.
    np.testing.assert_array_equal(target_ranks(scores.copy(), np.array([1, 3]), None), [2, 0])


def test_a_tie_goes_to_the_lower_row_as_the_service_breaks_it() -> None:
    """A query that scores every movie alike (a collapsed model, a history the baseline cannot read) ranks its
    target where the service would list it, not first: else it would be a hit at every k."""
    flat = np.zeros((3, 5), dtype=np.float32)
    np.testing.assert_array_equal(target_ranks(flat.copy(), np.array([0, 2, 4]), None), [0, 2, 4])
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]], dtype=np.float32)
    np.testing.assert_array_equal(target_ranks(scores.copy(), np.array([3]), None), [3])  # 0.9, then rows 1 and 2
    # An excluded movie never ties with the target.
    excluded = (np.array([0]), np.array([1]))
    np.testing.assert_array_equal(target_ranks(scores.copy(), np.array([3]), excluded), [2])


def test_exclusion_removes_seen_movies_but_never_the_target() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1]], dtype=np.float32)
    # The user saw movies 0 and 1; movie 1 is also the target (a re-rating).
    ranks = target_ranks(scores.copy(), np.array([1]), (np.array([0, 0]), np.array([0, 1])))
    np.testing.assert_array_equal(ranks, [1])  # movie 0 is removed, movie 2 still beats the target


def test_model_tables_by_hand() -> None:
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    movies = np.array([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    known = _ratings([(1, 0, 5), (3, 0, 5)])  # users 1 and 3 rated movie 0
    held_out = _held_out(known, [1, 3, 3], [1, 2, 2], [10, 10, 10], before=False)
    popularity = np.array([0, 1, 2], dtype=np.int32)
    # A: query 0 target 1 ranks 1; query 1 target 2 ranks 0; query 2 target 2 ranks 2 (scores 3, 2, 1).
    a = accuracy_table(model_ranks(queries, movies, popularity, held_out, exclude=False, chunk=2))
    assert a["top_1"] == 1 / 3 and a["top_5"] == 1.0
    # B: movie 0 is excluded for both users, so query 0 ranks 0 and query 2 ranks 1.
    b = accuracy_table(model_ranks(queries, movies, popularity, held_out, exclude=True, chunk=2))
    assert b["top_1"] == 2 / 3 and b["top_5"] == 1.0


def test_a_large_catalogue_is_scored_in_smaller_chunks_with_the_same_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    queries, movies = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(30, 4)).astype(np.float32)
    known = _ratings([(u, int(rng.integers(30)), 5) for u in range(10)])
    held_out = _held_out(known, list(range(10)) * 5, rng.integers(0, 30, 50).tolist(), [10] * 50, before=False)
    popularity = popularity_ranking(known.movie_rows, 30)
    expected = model_ranks(queries, movies, popularity, held_out, exclude=True, chunk=64)
    shapes: list[tuple[int, ...]] = []
    original = evaluate_module.target_ranks

    def spy(scores: np.ndarray, *args: object) -> np.ndarray:
        shapes.append(scores.shape)
        return original(scores, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluate_module, "MAX_CHUNK_CELLS", 30 * 7)  # 7 queries x 30 movies at a time
    monkeypatch.setattr(evaluate_module, "target_ranks", spy)
    np.testing.assert_array_equal(model_ranks(queries, movies, popularity, held_out, exclude=True, chunk=64), expected)
    assert max(shape[0] for shape in shapes) == 7 and sum(shape[0] for shape in shapes) == 50


def test_a_user_the_model_does_not_know_is_scored_by_popularity_as_the_service_answers() -> None:
    queries = np.array([[0.0, 1.0]], dtype=np.float32)  # would rank movie 2 first
    movies = np.array([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    held_out = _held_out(_ratings([(1, 0, 5)]), [9], [0], [10], before=False)  # user 9 has no ratings
    popularity = np.array([0, 1, 2], dtype=np.int32)
    assert held_out.fallback.tolist() == [True]
    assert model_ranks(queries, movies, popularity, held_out, exclude=True).tolist() == [0]  # popularity's first


def test_popularity_baseline_by_hand() -> None:
    ranking = popularity_ranking(np.array([2, 2, 2, 0, 0, 1]), 4)
    np.testing.assert_array_equal(ranking, [2, 0, 1, 3])
    held_out = _held_out(_ratings([(1, 2, 5)]), [1, 5], [0, 3], [10, 10], before=False)
    # user 1's target (movie 0) ranks 1 overall, 0 once movie 2 (seen) is excluded; user 5's movie 3 ranks 3.
    a = accuracy_table(baseline_ranks(ranking, held_out, exclude=False))
    b = accuracy_table(baseline_ranks(ranking, held_out, exclude=True))
    assert a["top_1"] == 0.0 and a["top_5"] == 1.0
    assert b["top_1"] == 0.5


def test_histories_hold_only_earlier_ratings_newest_first() -> None:
    # user 7 rated movies 4, 5, 6 at t=10, 20, 20 and movie 8 at t=30; user 3 rated movie 1 at t=15.
    known = _ratings([(7, 5, 20), (3, 1, 15), (7, 4, 10), (7, 8, 30), (7, 6, 20)])
    users = np.array([7, 7, 7, 7, 3, 99])
    times = np.array([10, 20, 25, 31, 100, 100])
    histories = known.histories(users, times, length=2)
    assert histories.tolist() == [
        [PAD, PAD],  # nothing before t=10
        [4, PAD],  # ratings in the same second as the query are not before it
        [6, 5],  # the two newest of 4, 5, 6
        [8, 6],
        [1, PAD],
        [PAD, PAD],  # an unknown user has no history
    ]
    start, end = known.spans_before(users, times)
    rows, movies = span_pairs(known.movie_rows, start, end)
    assert sorted(movies[rows == 2].tolist()) == [4, 5, 6] and movies[rows == 5].tolist() == []
    assert known.spans(np.array([7]))[1] - known.spans(np.array([7]))[0] == 4


def test_protocol_t_excludes_and_reads_everything_before_the_query() -> None:
    # Movies 0..2; user 1 rated movie 0 at t=5 and movie 1 at t=8 (held out); target movie 1 at t=8, movie 2 at t=9.
    known = _ratings([(1, 0, 5), (1, 1, 8), (1, 2, 9)])
    held_out = _held_out(known, [1, 1], [1, 2], [8, 9], before=True)
    ranking = np.array([0, 1, 2], dtype=np.int32)
    # query at t=8: movie 0 excluded -> movie 1 ranks 0; at t=9: movies 0 and 1 excluded -> movie 2 ranks 0.
    assert baseline_ranks(ranking, held_out, exclude=True).tolist() == [0, 0]
    assert baseline_ranks(ranking, held_out, exclude=False).tolist() == [1, 2]


def test_split_is_deterministic_and_disjoint() -> None:
    ratings = pd.DataFrame({"user_id": np.arange(100) % 7, "movie_id": np.arange(100), "timestamp": np.arange(100)})
    a = split_ratings(ratings, "random", 0.2, seed=1)
    b = split_ratings(ratings, "random", 0.2, seed=1)
    c = split_ratings(ratings, "random", 0.2, seed=2)
    assert len(a.test) == 20 and len(a.train) == 80
    pd.testing.assert_frame_equal(a.test, b.test)
    assert not a.test.equals(c.test)
    assert set(a.test["movie_id"]).isdisjoint(a.train["movie_id"])
    temporal = split_ratings(ratings, "temporal", 0.2, seed=1)
    assert temporal.test["timestamp"].min() > temporal.train["timestamp"].max()


def test_user_ratings_group_by_user_in_time_order() -> None:
    known = _ratings([(5, 2, 30), (3, 0, 10), (5, 0, 20), (3, 1, 5)])
    assert known.user_ids.tolist() == [3, 5]
    assert known.movie_rows[known.indptr[0] : known.indptr[1]].tolist() == [1, 0]
    assert known.movie_rows[known.indptr[1] : known.indptr[2]].tolist() == [0, 2]
    assert known.positions(np.array([5, 4, 3])).tolist() == [1, -1, 0]


def test_ranks_with_a_demotion_are_the_targets_places_in_the_servers_reordered_answer() -> None:
    rng = np.random.default_rng(4)
    num_movies, pool = 40, 12
    tower_queries, movies = rng.normal(size=(60, 3)).astype(np.float32), rng.normal(size=(num_movies, 3))
    term = new_rating_model(3.5, rng.normal(0, 0.5, num_movies), rng.normal(0, 1, (num_movies, 2)), 1.0, 0.5, movies)
    term = dataclasses.replace(term, demote_pool=pool, demote_margin=0.25, demote_penalty=3.0)
    columns = {"user_id": np.repeat(np.arange(6), 5), "timestamp": np.tile(np.arange(5), 6)}
    known = build_user_ratings({**columns, "rating": rng.integers(1, 6, 30)}, rng.integers(0, num_movies, 30))
    users = np.repeat(np.arange(6), 10)
    start, end = known.spans(users)
    targets = rng.integers(0, num_movies, 60)
    held_out = HeldOutQueries(targets, known, start, end, fallback=np.zeros(60, dtype=bool))
    queries, candidates = served_vectors(term, tower_queries, movies.astype(np.float32), held_out)
    popularity = popularity_ranking(known.movie_rows, num_movies)
    ranks = model_ranks(queries, candidates, popularity, held_out, True, rating=term)
    moved = 0
    for j in range(60):
        seen = set(known.movie_rows[start[j] : end[j]].tolist()) - {int(targets[j])}  # a re-rated target stays
        allowed = np.array([m for m in range(num_movies) if m not in seen])
        scores = candidates[allowed] @ queries[j]
        order = np.argsort(-scores, kind="stable")
        answer, _ = term.rerank(queries[j], allowed[order], scores[order], candidates)  # what the server returns
        assert ranks[j] == answer.tolist().index(int(targets[j]))
        moved += int(ranks[j] != int(np.flatnonzero(allowed[order] == targets[j])[0]))
    assert moved > 0  # the demotion changed some targets' places, so the comparison above tests it


def test_a_fallback_querys_ranks_are_its_targets_places_in_the_servers_reordered_popularity_answer() -> None:
    """A user with ratings but no history (only dislikes) gets popularity, re-ordered by the rating term
    (RatingModel.popular_rerank): protocol T scores the same answer. A user without ratings is not re-ordered."""
    rng = np.random.default_rng(5)
    num_movies, pool = 40, 12
    tower_queries, movies = rng.normal(size=(60, 3)).astype(np.float32), rng.normal(size=(num_movies, 3))
    term = new_rating_model(3.5, rng.normal(0, 0.5, num_movies), rng.normal(0, 1, (num_movies, 2)), 1.0, 0.5, movies)
    term = dataclasses.replace(term, demote_pool=pool, demote_margin=0.0, demote_penalty=3.0, user_bias_penalty=1.0)
    columns = {"user_id": np.repeat(np.arange(6), 5), "timestamp": np.tile(np.arange(5), 6)}
    values = rng.integers(1, 3, 30)  # dislikes only
    known = build_user_ratings({**columns, "rating": values}, rng.integers(0, num_movies, 30))
    users = np.repeat(np.arange(6), 10)
    start, end = known.spans(users)
    end[users == 5] = start[users == 5]  # user 5 asks before any rating: nothing to re-order by
    targets = rng.integers(0, num_movies, 60)
    held_out = HeldOutQueries(targets, known, start, end, fallback=np.ones(60, dtype=bool))
    queries, candidates = served_vectors(term, tower_queries, movies.astype(np.float32), held_out)
    popularity = popularity_ranking(known.movie_rows, num_movies)
    ranks = model_ranks(queries, candidates, popularity, held_out, True, rating=term)
    plain = model_ranks(queries, candidates, popularity, held_out, True, rating=term, popular_rerank=False)
    assert (ranks[users == 5] == plain[users == 5]).all()
    assert (ranks != plain).any()  # the re-ordering moved some targets, so the comparison below tests it
    for j in range(60):
        rated = known.movie_rows[start[j] : end[j]]
        seen = set(rated.tolist()) - {int(targets[j])}
        shown = np.array([m for m in popularity.tolist() if m not in seen])
        part = term.user_part(rated, known.values[start[j] : end[j]])  # type: ignore[index]
        answer = term.popular_rerank(part, shown, candidates)  # what the server returns
        assert ranks[j] == answer.tolist().index(int(targets[j]))
