"""The genre-taste term (benchmarks/genre_term.py, measured and not served): each movie's genres and each
user's taste as the term reads them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.genre_term import genre_matrix, tastes
from contract.user_ratings import UserRatings
from training.evaluate import HeldOutQueries

MOVIES = pd.DataFrame({"genres": ["Horror", "Children's|Comedy", "unknown", "Horror|Comedy"]})


def test_a_movies_genres_are_one_hot_unit_length_and_unknown_is_none() -> None:
    genres = genre_matrix(MOVIES)  # columns in name order: Children's, Comedy, Horror
    half = 1 / np.sqrt(2)
    np.testing.assert_allclose(genres, [[0, 0, 1], [half, half, 0], [0, 0, 0], [0, half, half]], atol=1e-6)


def _queries(stars: list[float]) -> HeldOutQueries:
    """One query knowing one user's ratings of movies 0, 1, 3 with these stars."""
    known = UserRatings(
        user_ids=np.array([7]),
        indptr=np.array([0, 3]),
        movie_rows=np.array([0, 1, 3]),
        timestamps=np.array([1, 2, 3]),
        values=np.array(stars, np.float32),
    )
    one = np.array([0])
    return HeldOutQueries(one, known, one, np.array([3]), np.array([False]))


def test_liked_taste_reads_only_ratings_of_four_stars_or_more() -> None:
    taste = tastes(_queries([5, 1, 2]), genre_matrix(MOVIES), "liked")
    np.testing.assert_allclose(taste, [[0, 0, 1]], atol=1e-6)  # the horror film alone


def test_centred_taste_leans_away_from_what_the_user_rated_low() -> None:
    taste = tastes(_queries([5, 1, 3]), genre_matrix(MOVIES), "centred")[0]
    assert taste[2] > 0 > taste[0]  # towards horror, away from the children's film
    np.testing.assert_allclose(np.linalg.norm(taste), 1, atol=1e-6)


def test_a_query_that_knows_nothing_has_no_taste() -> None:
    queries = _queries([5, 5, 5])
    empty = HeldOutQueries(queries.targets, queries.known, np.array([0]), np.array([0]), queries.fallback)
    np.testing.assert_array_equal(tastes(empty, genre_matrix(MOVIES), "liked"), [[0, 0, 0]])
