"""The decayed ranking is the ranking by a decayed count computed directly, at every moment after the ratings."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal, localcontext

import numpy as np
import pandas as pd
import pytest

from contract.popularity import DAY_SECONDS, DecayedPopularity
from contract.user_ratings import build_user_ratings, known_bound

NUM_MOVIES = 40
T0 = 890_000_000  # ML-100K's time: log-sums of t/tau near 10^4, where a naive exp would overflow


def _ratings(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, NUM_MOVIES - 5, n)  # the last 5 movies are never rated
    times = T0 + rng.integers(0, 60 * DAY_SECONDS, n)
    return rows, times


def _brute_force(rows: np.ndarray, times: np.ndarray, at: int, half_life: float) -> np.ndarray:
    """Movie rows by Σ 2^(-(at - t_i)/half_life) over the ratings before `at`, summed term by term in 50-digit
    decimals (whose exponents do not underflow in 28 years); ties by count, then row."""
    scores = [Decimal(0)] * NUM_MOVIES
    counts = [0] * NUM_MOVIES
    for row, t in zip(rows.tolist(), times.tolist(), strict=True):
        if t < known_bound(at, at_now=False):
            scores[row] += 1 if math.isinf(half_life) else Decimal(2) ** (-Decimal(at - t) / Decimal(half_life))
            counts[row] += 1
    return np.array(sorted(range(NUM_MOVIES), key=lambda m: (-scores[m], -counts[m], m)))


@pytest.fixture(autouse=True)
def _fifty_digits() -> Iterator[None]:
    with localcontext() as context:
        context.prec = 50
        yield


@pytest.mark.parametrize("half_life_days", [0.5, 3.0, 30.0, math.inf])
def test_the_ranking_is_the_decayed_count_computed_directly_at_each_moment(half_life_days: float) -> None:
    rows, times = _ratings(seed=0)
    half_life = half_life_days * DAY_SECONDS
    for at in (T0 + 5 * DAY_SECONDS, T0 + 20 * DAY_SECONDS, T0 + 59 * DAY_SECONDS):
        before = times < known_bound(at, at_now=False)
        popularity = DecayedPopularity(NUM_MOVIES, half_life)
        popularity.add(rows[before], times[before])
        np.testing.assert_array_equal(popularity.ranking(), _brute_force(rows, times, at, half_life))
        counts = np.bincount(rows[before], minlength=NUM_MOVIES)
        np.testing.assert_array_equal(popularity.counts, counts)
        if not math.isinf(half_life):
            direct = np.array([np.sum(2.0 ** (-(at - times[before & (rows == m)]) / half_life)) for m in range(40)])
            np.testing.assert_allclose(popularity.decayed_counts(at), direct, rtol=1e-9)


def test_after_the_newest_rating_the_ranking_no_longer_depends_on_the_moment() -> None:
    rows, times = _ratings(seed=1)
    popularity = DecayedPopularity(NUM_MOVIES, 7 * DAY_SECONDS)
    popularity.add(rows, times)
    for years_later in (0, 1, 28):  # 28 years: every direct count has underflowed, the log-sums have not
        at = int(times.max()) + 1 + years_later * 365 * DAY_SECONDS
        np.testing.assert_array_equal(popularity.ranking(), _brute_force(rows, times, at, 7 * DAY_SECONDS))


def test_incremental_adds_equal_one_batch_bit_for_bit() -> None:
    rows, times = _ratings(seed=2)
    whole = DecayedPopularity(NUM_MOVIES, 3 * DAY_SECONDS)
    whole.add(rows, times)
    pieces = DecayedPopularity(NUM_MOVIES, 3 * DAY_SECONDS)
    for lo, hi in [(0, 1), (1, 17), (17, 17), (17, 300), (300, 600)]:
        pieces.add(rows[lo:hi], times[lo:hi])
        pieces.ranking()  # read between adds: the cached ranking must not go stale
    np.testing.assert_array_equal(pieces.ranking(), whole.ranking())
    np.testing.assert_array_equal(pieces.decayed_counts(T0), whole.decayed_counts(T0))
    assert pieces.num_ratings == whole.num_ratings == len(rows)


def test_an_old_rating_arriving_late_counts_as_if_it_had_come_in_time() -> None:
    rows, times = _ratings(seed=3)
    in_time = DecayedPopularity(NUM_MOVIES, 7 * DAY_SECONDS)
    in_time.add(rows[np.argsort(times)], np.sort(times))
    shuffled = DecayedPopularity(NUM_MOVIES, 7 * DAY_SECONDS)
    shuffled.add(rows, times)  # not in time order
    np.testing.assert_array_equal(shuffled.ranking(), in_time.ranking())


def test_ties_are_broken_by_all_time_count_then_by_row() -> None:
    popularity = DecayedPopularity(6, DAY_SECONDS)
    # Movies 4 and 1: one rating each in the same second, a tie. Movie 3: the same moment, plus one a
    # year older that adds ~2^-365 (below the tie precision): tied with them, ahead on all-time count.
    # Movie 5: one rating a second later, strictly first. Movies 0 and 2: never rated, last, by row.
    popularity.add(np.array([4, 1, 3, 3, 5]), np.array([T0, T0, T0, T0 - 365 * DAY_SECONDS, T0 + 1]))
    np.testing.assert_array_equal(popularity.ranking(), [5, 3, 1, 4, 0, 2])
    np.testing.assert_array_equal(DecayedPopularity(3, DAY_SECONDS).ranking(), [0, 1, 2])


def test_the_same_ratings_summed_in_another_order_tie() -> None:
    """Summed in these two orders the log-sums differ in their last bit (9e-13): still a tie, so the row decides
    and a replica that read the ratings in other batches cannot order the two movies the other way."""
    times = np.array([890_241_884, 890_403_951, 890_119_813])
    popularity = DecayedPopularity(2, DAY_SECONDS)
    popularity.add(np.array([1, 1, 1, 0, 0, 0]), np.concatenate([times, times[::-1]]))
    assert popularity.log_sums[0] != popularity.log_sums[1]
    np.testing.assert_array_equal(popularity.ranking(), [0, 1])


def test_an_infinite_half_life_is_the_all_time_count() -> None:
    rows, times = _ratings(seed=4)
    popularity = DecayedPopularity(NUM_MOVIES, math.inf)
    popularity.add(rows, times)
    counts = np.bincount(rows, minlength=NUM_MOVIES)
    np.testing.assert_array_equal(popularity.ranking(), np.lexsort((np.arange(NUM_MOVIES), -counts)))


def test_built_from_a_versions_ratings_it_counts_each_of_them() -> None:
    rows, times = _ratings(seed=5, n=50)
    users = np.random.default_rng(5).integers(1, 8, len(rows))
    seen = build_user_ratings(pd.DataFrame({"user_id": users, "timestamp": times}), rows)
    built = DecayedPopularity.from_user_ratings(seen, NUM_MOVIES, 7 * DAY_SECONDS)
    direct = DecayedPopularity(NUM_MOVIES, 7 * DAY_SECONDS)
    direct.add(rows, times)
    np.testing.assert_array_equal(built.ranking(), direct.ranking())


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="half_life_seconds"):
        DecayedPopularity(3, 0.0)
    popularity = DecayedPopularity(3, DAY_SECONDS)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        popularity.add(np.array([3]), np.array([T0]))
    with pytest.raises(ValueError, match="timestamps"):
        popularity.add(np.array([0, 1]), np.array([T0]))
    with pytest.raises(ValueError):
        popularity.ranking()[0] = 1  # shared with every request: read-only
