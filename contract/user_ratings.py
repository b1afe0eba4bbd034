"""What is known about a user at a moment: each user's ratings in time order, and the one rule for "before t".

Training (its examples' histories), every offline protocol, the rescoring of an exported version, the smoke
check and the server all read a user's seen movies and history through this module, so all of them mean
the same thing by "rated before t". NumPy only: the service imports it without pandas or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

PAD = -1  # history slot with no movie
NO_VALUE = 0.0  # the rating value of a history slot whose value is unknown (a padded slot, an id a client sent)
_SHIFT = np.int64(1) << np.int64(32)  # user position in the high bits, timestamp in the low: one sorted key


def known_bound(timestamp: Any, *, at_now: bool) -> Any:
    """The exclusive upper bound on the timestamps of the ratings known to a query at `timestamp`.

    At an explicit moment (every offline protocol, and a request that names its timestamp) a rating in the
    same second is not before it: ML users often rate many movies in one second. At now (a request without a
    timestamp) every stored rating came before the request, even one stored within the same second: a user
    who rates and at once asks again must see it count.
    """
    return timestamp + 1 if at_now else timestamp


class Columns(Protocol):
    """Anything with named columns (a pandas DataFrame, a dict of arrays)."""

    def __getitem__(self, name: str) -> Any: ...


@dataclass(frozen=True)
class UserRatings:
    """CSR by user, each user's ratings oldest first: user i's are movie_rows[indptr[i]:indptr[i+1]]."""

    user_ids: np.ndarray  # [num_users], unique (int64 in training, str as a version's seen.npz stores them)
    indptr: np.ndarray  # int64 [num_users + 1]
    movie_rows: np.ndarray  # int32 or int64 [num_ratings], rows into the catalogue
    timestamps: np.ndarray  # int64 [num_ratings]
    values: np.ndarray | None = None  # float32 [num_ratings]: the stars of each rating (None: not kept)

    @cached_property
    def _order(self) -> np.ndarray:
        return np.argsort(self.user_ids, kind="stable")

    @cached_property
    def _keys(self) -> np.ndarray:
        """Sorted: each rating's user position (high bits) and timestamp (low bits)."""
        keys = np.repeat(np.arange(len(self.user_ids), dtype=np.int64), np.diff(self.indptr)) * _SHIFT
        return keys + self.timestamps.clip(0, _SHIFT - 1)

    def positions(self, user_ids: np.ndarray) -> np.ndarray:
        """Index of each user in `user_ids`, or -1 for a user with no ratings here."""
        if len(self.user_ids) == 0:
            return np.full(len(user_ids), -1, dtype=np.int64)
        where = np.searchsorted(self.user_ids, user_ids, sorter=self._order).clip(0, len(self.user_ids) - 1)
        found = self._order[where]
        return np.where(self.user_ids[found] == user_ids, found, -1)

    def ratings_at(self, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Movie rows, timestamps and values (NO_VALUE where not kept) of the user at `position`, oldest first."""
        span = slice(self.indptr[position], self.indptr[position + 1])
        values = self.values[span] if self.values is not None else np.full(span.stop - span.start, NO_VALUE, np.float32)
        return self.movie_rows[span], self.timestamps[span], values

    def spans_before(self, user_ids: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) into movie_rows of each query's ratings with a timestamp below its bound (`known_bound`);
        empty for an unknown user."""
        positions = self.positions(user_ids)
        known = positions >= 0
        safe = np.where(known, positions, 0)
        start = self.indptr[safe]
        query = safe * _SHIFT + np.asarray(bounds, dtype=np.int64).clip(0, _SHIFT - 1)
        end = np.searchsorted(self._keys, query, side="left")
        return np.where(known, start, 0), np.where(known, end, 0)

    def spans(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) of each user's ratings at any time (the seen list); empty for an unknown user."""
        positions = self.positions(user_ids)
        safe = np.where(positions >= 0, positions, 0)
        return np.where(positions >= 0, self.indptr[safe], 0), np.where(positions >= 0, self.indptr[safe + 1], 0)

    def read_as_history(self, history_min_rating: float) -> UserRatings:
        """The ratings a history is read from (`read_as_taste`): these, or a copy without the disliked ones.
        Seen lists and exclusions keep reading every rating."""
        if self.values is None or history_min_rating <= 0:
            return self
        keep = read_as_taste(self.values, history_min_rating)
        if keep.all():
            return self
        kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])  # ratings kept before each index
        return UserRatings(
            user_ids=self.user_ids,
            indptr=kept_before[self.indptr],
            movie_rows=self.movie_rows[keep],
            timestamps=self.timestamps[keep],
            values=self.values[keep],
        )

    def histories(self, user_ids: np.ndarray, bounds: np.ndarray, length: int) -> np.ndarray:
        """int32 [n, length]: each query's latest `length` movies below its bound, newest first, PAD after."""
        return self.rated_histories(user_ids, bounds, length)[0]

    def rated_histories(self, user_ids: np.ndarray, bounds: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """`histories` and float32 [n, length] the value of each of those ratings (NO_VALUE at PAD)."""
        if len(self.movie_rows) == 0:
            shape = (len(user_ids), length)
            return np.full(shape, PAD, dtype=np.int32), np.full(shape, NO_VALUE, dtype=np.float32)
        start, end = self.spans_before(user_ids, bounds)
        index = end[:, None] - np.arange(1, length + 1, dtype=np.int64)[None, :]
        present, safe = index >= start[:, None], np.clip(index, 0, None)
        rows = np.where(present, self.movie_rows[safe], PAD).astype(np.int32)
        if self.values is None:
            return rows, np.full(rows.shape, NO_VALUE, dtype=np.float32)
        return rows, np.where(present, self.values[safe], NO_VALUE).astype(np.float32)


def read_as_taste(values: np.ndarray, history_min_rating: float) -> np.ndarray:
    """bool [n]: which ratings the query tower reads as the user's taste, by their stars.

    A rating below `history_min_rating` stars says the user did not like the movie: read as history it would
    pull the query towards that movie's neighbours, so a 1-star rating counted as a 5-star one (issue 19). It is
    left out of the history (it stays seen, and excluded from the user's answers). A rating whose value is not
    known (NO_VALUE: an id a client sent, a version that kept no stars) is read. 0 reads every rating.
    """
    values = np.asarray(values)
    return (values == NO_VALUE) | (values >= history_min_rating)


def known_at(timestamps: np.ndarray, bound: int) -> np.ndarray:
    """bool [n]: which of a user's ratings are known to a query whose bound is `bound` (`known_bound`)."""
    return timestamps < bound


def newest_first(rows: np.ndarray, length: int) -> np.ndarray:
    """A history of at most `length` movie rows, newest first, from rows oldest first."""
    return rows[::-1][:length]


def history_movie_ids(histories: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
    """str [n, H]: the query tower's `history` input from `histories` rows (PAD becomes "", the padding)."""
    return np.concatenate([[""], movie_ids])[histories + 1]


def span_pairs(movie_rows: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query row, movie row) for every rating inside each query's [start, end), without a Python loop."""
    lengths = end - start
    rows = np.repeat(np.arange(len(start)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, movie_rows[np.repeat(start, lengths) + offsets]


def build_user_ratings(ratings: Columns, movie_rows: np.ndarray) -> UserRatings:
    """Groups ratings by user in time order, vectorised (no per-user Python loop).

    Args:
        ratings: user_id and timestamp (int64) columns, and the stars as `rating` where known.
        movie_rows: int [len(ratings)], each rating's movie row in the catalogue.
    """
    users = np.asarray(ratings["user_id"])
    times = np.asarray(ratings["timestamp"], dtype=np.int64)
    order = np.lexsort((movie_rows, times, users))
    users = users[order]
    unique_users, starts = np.unique(users, return_index=True)
    return UserRatings(
        user_ids=unique_users,
        indptr=np.append(starts, len(users)).astype(np.int64),
        movie_rows=np.asarray(movie_rows)[order].astype(np.int32),
        timestamps=times[order],
        values=_values(ratings, order),
    )


def _values(ratings: Columns, order: np.ndarray) -> np.ndarray | None:
    try:
        column = ratings["rating"]
    except KeyError:
        return None
    return np.asarray(column, dtype=np.float32)[order]
