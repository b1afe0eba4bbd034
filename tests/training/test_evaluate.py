"""Offline metrics against hand-computed examples."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from training.dataset import SeenMovies, build_seen, split_ratings
from training.evaluate import evaluate_embeddings, evaluate_popularity, popularity_ranking, target_ranks


def _seen(pairs: dict[int, list[int]]) -> SeenMovies:
    users = np.array(sorted(pairs), dtype=np.int64)
    rows = [np.array(pairs[u], dtype=np.int32) for u in users]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return SeenMovies(users, indptr, np.concatenate(rows))


def test_ranks_by_hand() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    # query 0: target movie 1 (0.5) is beaten by 0.9 and 0.7; query 1: target movie 3 is the best.
    np.testing.assert_array_equal(target_ranks(scores.copy(), np.array([1, 3])), [2, 0])


def test_protocol_b_excludes_seen_but_never_the_target() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1]], dtype=np.float32)
    seen = _seen({10: [0, 1]})  # user 10 saw movies 0 and 1 in training; movie 1 is also the target
    ranks = target_ranks(scores.copy(), np.array([1]), seen, seen.positions(np.array([10])))
    np.testing.assert_array_equal(ranks, [1])  # movie 0 is removed, movie 2 still beats the target


def test_tables_by_hand() -> None:
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    movies = np.array([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    # query 0 target 1 (rank 1); query 1 target 2 (rank 0); query 2 target 2 (scores 3,2,1 -> rank 2)
    seen = _seen({1: [0], 3: [0]})
    tables = evaluate_embeddings(queries, movies, np.array([1, 2, 2]), np.array([1, 2, 3]), seen, chunk=2)
    assert tables["A"]["top_1"] == 1 / 3 and tables["A"]["top_5"] == 1.0
    # B: users 1 and 3 saw movie 0, so query 0 ranks 0 and query 2 ranks 1.
    assert tables["B"]["top_1"] == 2 / 3
    assert tables["B"]["top_5"] == 1.0


def test_popularity_baseline_by_hand() -> None:
    ranking = popularity_ranking(np.array([2, 2, 2, 0, 0, 1]), 4)
    np.testing.assert_array_equal(ranking, [2, 0, 1, 3])
    seen = _seen({1: [2]})
    tables = evaluate_popularity(ranking, 4, np.array([0, 3]), np.array([1, 5]), seen)
    # user 1's target (movie 0) ranks 1 overall, 0 once movie 2 (seen) is excluded; user 5's movie 3 ranks 3.
    assert tables["A"]["top_1"] == 0.0 and tables["A"]["top_5"] == 1.0
    assert tables["B"]["top_1"] == 0.5


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


def test_seen_index_groups_training_movies_by_user() -> None:
    movies = pd.DataFrame({"movie_id": [10, 20, 30], "title": ["a", "b", "c"], "genres": ["", "", ""]})
    ratings = pd.DataFrame({"user_id": [5, 3, 5, 3], "movie_id": [30, 10, 10, 20], "rating": 1.0, "timestamp": 0})
    seen = build_seen(SimpleNamespace(movies=movies), ratings)  # type: ignore[arg-type]
    assert seen.user_ids.tolist() == [3, 5]
    assert seen.movie_rows[seen.indptr[0] : seen.indptr[1]].tolist() == [0, 1]
    assert seen.movie_rows[seen.indptr[1] : seen.indptr[2]].tolist() == [0, 2]
    assert seen.positions(np.array([5, 4, 3])).tolist() == [1, -1, 0]
