"""Each user's ratings in time order: the seen lists to exclude and the histories the query tower reads.

One structure answers "what had this user rated before time t" for training examples, for every offline
protocol and (exported as seen.npz) for the server, so all of them mean the same thing by a history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PAD = -1  # history slot with no movie
_SHIFT = np.int64(1) << np.int64(32)  # user position in the high bits, timestamp in the low: one sorted key


@dataclass(frozen=True)
class UserRatings:
    """CSR by user, each user's ratings oldest first: user i's are movie_rows[indptr[i]:indptr[i+1]]."""

    user_ids: np.ndarray  # int64 [num_users], sorted
    indptr: np.ndarray  # int64 [num_users + 1]
    movie_rows: np.ndarray  # int32 [num_ratings]
    timestamps: np.ndarray  # int64 [num_ratings]

    def positions(self, user_ids: np.ndarray) -> np.ndarray:
        """Index of each user in `user_ids`, or -1 for a user with no ratings here."""
        if len(self.user_ids) == 0:
            return np.full(len(user_ids), -1, dtype=np.int64)
        where = np.searchsorted(self.user_ids, user_ids).clip(0, len(self.user_ids) - 1)
        return np.where(self.user_ids[where] == user_ids, where, -1)

    def spans_before(self, user_ids: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) into movie_rows of each query's ratings strictly before its timestamp (empty if unknown).

        Ratings in the same second as the query are not before it: ML users often rate many movies at once.
        """
        positions = self.positions(user_ids)
        known = positions >= 0
        safe = np.where(known, positions, 0)
        start = self.indptr[safe]
        keys = np.repeat(np.arange(len(self.user_ids), dtype=np.int64), np.diff(self.indptr)) * _SHIFT
        keys = keys + self.timestamps.clip(0, _SHIFT - 1)
        query = safe * _SHIFT + np.asarray(timestamps, dtype=np.int64).clip(0, _SHIFT - 1)
        end = np.searchsorted(keys, query, side="left")
        return np.where(known, start, 0), np.where(known, end, 0)

    def spans(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) of each user's ratings at any time (the seen list); empty for an unknown user."""
        positions = self.positions(user_ids)
        safe = np.where(positions >= 0, positions, 0)
        return np.where(positions >= 0, self.indptr[safe], 0), np.where(positions >= 0, self.indptr[safe + 1], 0)

    def histories(self, user_ids: np.ndarray, timestamps: np.ndarray, length: int) -> np.ndarray:
        """int32 [n, length]: each query's latest `length` movies rated strictly before it, newest first, PAD after."""
        if len(self.movie_rows) == 0:
            return np.full((len(user_ids), length), PAD, dtype=np.int32)
        start, end = self.spans_before(user_ids, timestamps)
        index = end[:, None] - np.arange(1, length + 1, dtype=np.int64)[None, :]
        return np.where(index >= start[:, None], self.movie_rows[np.clip(index, 0, None)], PAD).astype(np.int32)


def history_movie_ids(histories: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
    """str [n, H]: the query tower's `history` input from `histories` rows (PAD becomes "", the padding)."""
    return np.concatenate([[""], movie_ids])[histories + 1]


def span_pairs(movie_rows: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query row, movie row) for every rating inside each query's [start, end), without a Python loop."""
    lengths = end - start
    rows = np.repeat(np.arange(len(start)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, movie_rows[np.repeat(start, lengths) + offsets]


def build_user_ratings(ratings: pd.DataFrame, movie_rows: np.ndarray) -> UserRatings:
    """Groups ratings by user in time order, vectorised (no per-user Python loop).

    Args:
        ratings: user_id int64 and timestamp int64 columns.
        movie_rows: int [len(ratings)], each rating's movie row in the catalogue.
    """
    users = ratings["user_id"].to_numpy(dtype=np.int64)
    times = ratings["timestamp"].to_numpy(dtype=np.int64)
    order = np.lexsort((movie_rows, times, users))
    users = users[order]
    unique_users, starts = np.unique(users, return_index=True)
    return UserRatings(
        user_ids=unique_users,
        indptr=np.append(starts, len(users)).astype(np.int64),
        movie_rows=np.asarray(movie_rows)[order].astype(np.int32),
        timestamps=times[order],
    )
