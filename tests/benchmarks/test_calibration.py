"""Calibrated lists (benchmarks/calibration.py, measured and not served): a list keeps the genre proportions
of the history it answers."""

from __future__ import annotations

import numpy as np

from benchmarks.calibration import calibrated_order, genre_shares, history_distribution
from contract.user_ratings import PAD

NAMES = ["Children's", "Horror", "Comedy"]


def test_genre_shares_split_a_movie_equally_over_its_known_genres() -> None:
    shares = genre_shares([["Horror"], ["Children's", "Comedy"], [], ["Western"]], NAMES)
    np.testing.assert_allclose(shares, [[0, 1, 0], [0.5, 0, 0.5], [0, 0, 0], [0, 0, 0]])


def test_history_distribution_averages_present_movies_and_is_zero_when_empty() -> None:
    shares = genre_shares([["Horror"], ["Children's", "Comedy"]], NAMES)
    target = history_distribution(shares, np.array([[0, 1, PAD], [PAD, PAD, PAD]]))
    np.testing.assert_allclose(target, [[0.25, 0.5, 0.25], [0, 0, 0]])


def _two_tastes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six children's films scoring a little above four horror films, for a history that is half of each."""
    genres = [["Children's"]] * 6 + [["Horror"]] * 4
    shares = genre_shares(genres, NAMES)
    scores = np.array([[10, 9.8, 9.6, 9.4, 9.2, 9.0, 8.8, 8.7, 8.6, 8.5]], dtype=np.float32)
    target = np.array([[0.5, 0.5, 0.0]], dtype=np.float32)
    return scores, shares[None], target


def test_weight_zero_is_the_score_order() -> None:
    scores, shares, target = _two_tastes()
    np.testing.assert_array_equal(calibrated_order(scores, shares, target, 4, 0.0), [[0, 1, 2, 3]])


def test_a_calibrated_list_keeps_both_tastes_each_in_score_order() -> None:
    scores, shares, target = _two_tastes()
    order = calibrated_order(scores, shares, target, 4, 0.9)[0]
    assert sorted(order.tolist()) == [0, 1, 6, 7]  # two of each, the best of each
    assert order[0] == 0
    # A weaker weight mixes less: the horror films are the pool's lowest scores.
    assert calibrated_order(scores, shares, target, 4, 0.5)[0].tolist() == [0, 6, 1, 2]


def test_greedy_lists_are_prefixes_of_longer_ones() -> None:
    scores, shares, target = _two_tastes()
    np.testing.assert_array_equal(
        calibrated_order(scores, shares, target, 3, 0.5), calibrated_order(scores, shares, target, 8, 0.5)[:, :3]
    )


def test_a_history_without_genres_leaves_the_score_order() -> None:
    scores, shares, _ = _two_tastes()
    order = calibrated_order(scores, shares, np.zeros((1, 3), np.float32), 5, 0.9)
    np.testing.assert_array_equal(order, [[0, 1, 2, 3, 4]])
