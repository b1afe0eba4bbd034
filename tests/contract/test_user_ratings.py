"""What a history reads of a user's ratings: every one, or all but the disliked (issue 19)."""

from __future__ import annotations

import numpy as np

from contract.user_ratings import NO_VALUE, PAD, build_user_ratings, read_as_taste


def _ratings() -> dict[str, np.ndarray]:
    # user 1: movie 0 (5 stars), 1 (1 star), 2 (unknown value), 3 (2.5 stars); user 2: movie 4 (2 stars) only.
    return {
        "user_id": np.array([1, 1, 1, 1, 2]),
        "timestamp": np.array([10, 20, 30, 40, 15]),
        "rating": np.array([5.0, 1.0, NO_VALUE, 2.5, 2.0], dtype=np.float32),
    }


def test_a_rating_below_the_threshold_is_not_read_as_taste_and_an_unknown_value_is() -> None:
    values = np.array([0.5, 2.0, 2.5, 5.0, NO_VALUE], dtype=np.float32)
    assert read_as_taste(values, 2.5).tolist() == [False, False, True, True, True]
    assert read_as_taste(values, 0.0).all()


def test_histories_skip_the_disliked_ratings_while_every_rating_stays_seen() -> None:
    everything = build_user_ratings(_ratings(), np.array([0, 1, 2, 3, 4]))
    taste = everything.read_as_history(2.5)
    users, bounds = np.array([1, 2, 1]), np.array([100, 100, 25])
    rows, stars = taste.rated_histories(users, bounds, 4)
    assert rows.tolist() == [[3, 2, 0, PAD], [PAD] * 4, [0, PAD, PAD, PAD]]
    assert stars.tolist() == [[2.5, NO_VALUE, 5.0, NO_VALUE], [NO_VALUE] * 4, [5.0, NO_VALUE, NO_VALUE, NO_VALUE]]
    # The seen lists (what is excluded from answers) still hold every rating.
    start, end = everything.spans(np.array([1, 2]))
    assert [everything.movie_rows[s:e].tolist() for s, e in zip(start, end, strict=True)] == [[0, 1, 2, 3], [4]]
    assert everything.read_as_history(0.0) is everything
