"""The fallback ranking of a user with no ratings: movies by a time-decayed count of their ratings, kept as log-sums.

A rating at t_i counts exp(-(t - t_i)/tau) at time t, tau = half-life / ln 2. Every term shares the factor
exp(-t/tau), so at any t after the newest rating the order of the movies is the order of their log-sums
log Σ_i exp(t_i/tau), whatever t is: the ranking is kept as one log-sum per movie (log-sum-exp, as t_i/tau is
~10^4 for today's timestamps and a half-life of days) and updated as ratings arrive, with no clock in it. An
infinite half-life makes every term 1: the log-sum is the log of the all-time count. NumPy only: training,
the benchmarks and the service share it.
"""

from __future__ import annotations

import math

import numpy as np

from contract.user_ratings import UserRatings

DAY_SECONDS = 86_400
# Log-sums equal to this many decimals are a tie (decayed counts within a millionth of each other): the same
# ratings summed in another order differ in the last bits, and replicas must not order such movies apart.
TIE_DECIMALS = 6
# Below a minute a log-sum of today's timestamps (t/tau ~ 10^7) keeps too few bits below TIE_DECIMALS.
MIN_HALF_LIFE_SECONDS = 60.0


class DecayedPopularity:
    """Per-movie log-sums of exp(t_i/tau) over the ratings added so far, and the all-time counts that break ties.

    Adding the same ratings in the same order gives bit-identical log-sums however they are batched
    (`np.logaddexp.at` accumulates in index order), so replicas that read one store in id order agree.
    """

    def __init__(self, num_movies: int, half_life_seconds: float) -> None:
        """No rating counted yet.

        Args:
            num_movies: rows of the catalogue; `ranking` is a permutation of all of them.
            half_life_seconds: how long a rating takes to count half; math.inf counts every rating the same.

        Raises:
            ValueError: a half-life under MIN_HALF_LIFE_SECONDS.
        """
        if not half_life_seconds >= MIN_HALF_LIFE_SECONDS:
            raise ValueError(
                f"half_life_seconds must be at least {MIN_HALF_LIFE_SECONDS:g} (or math.inf), got {half_life_seconds}"
            )
        self.num_movies = num_movies
        self.half_life_seconds = half_life_seconds
        self._rate = 0.0 if math.isinf(half_life_seconds) else math.log(2.0) / half_life_seconds  # 1/tau
        self._log_sums = np.full(num_movies, -np.inf)  # no rating yet: a decayed count of 0
        self._counts = np.zeros(num_movies, dtype=np.int64)
        self._ranking: np.ndarray | None = None  # cached until the next add

    @classmethod
    def from_user_ratings(cls, ratings: UserRatings, num_movies: int, half_life_seconds: float) -> DecayedPopularity:
        """Every rating of a version (its seen.npz), in the file's order, so every replica sums them alike."""
        popularity = cls(num_movies, half_life_seconds)
        popularity.add(ratings.movie_rows, ratings.timestamps)
        return popularity

    @property
    def num_ratings(self) -> int:
        return int(self._counts.sum())

    @property
    def counts(self) -> np.ndarray:
        """int64 [num_movies]: every rating added, undecayed (a copy)."""
        return self._counts.copy()

    @property
    def log_sums(self) -> np.ndarray:
        """float64 [num_movies]: log Σ exp(t_i/tau) per movie, -inf for one never rated (a copy)."""
        return self._log_sums.copy()

    def add(self, movie_rows: np.ndarray, timestamps: np.ndarray) -> None:
        """Counts ratings of `movie_rows` (int [n], rows into the catalogue) made at `timestamps` (Unix seconds).

        Any order in time: a late-arriving old rating adds its (small) share like any other.
        """
        rows = np.asarray(movie_rows, dtype=np.int64)
        times = np.asarray(timestamps, dtype=np.int64)
        if rows.shape != times.shape:
            raise ValueError(f"{len(rows)} movie rows but {len(times)} timestamps")
        if len(rows) == 0:
            return
        if rows.min() < 0 or rows.max() >= self.num_movies:
            raise ValueError(f"movie rows must lie in [0, {self.num_movies}), got {rows.min()}..{rows.max()}")
        np.logaddexp.at(self._log_sums, rows, times.astype(np.float64) * self._rate)
        self._counts += np.bincount(rows, minlength=self.num_movies)
        self._ranking = None

    def ranking(self) -> np.ndarray:
        """int64 [num_movies]: every movie row, most rated recently first; ties by all-time count, then by row.

        The order at any moment after the newest added rating. The array is shared: callers must not change it.
        """
        if self._ranking is None:
            key = np.round(self._log_sums, TIE_DECIMALS)  # -inf (never rated) stays -inf: last
            order = np.lexsort((np.arange(self.num_movies), -self._counts, -key)).astype(np.int64)
            order.flags.writeable = False
            self._ranking = order
        return self._ranking

    def decayed_counts(self, at: int) -> np.ndarray:
        """float64 [num_movies]: Σ exp(-(at - t_i)/tau) over the ratings added (for reading, not ranking:
        far from the ratings these underflow to 0 where the log-sums still order the movies)."""
        return np.exp(self._log_sums - at * self._rate)
