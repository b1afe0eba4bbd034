"""Why a movie is recommended: the user's rated movies without which it would score lowest.

A reason is the model's own arithmetic, not a separate heuristic: the query is embedded again with each
history movie left out (one batched call of the query tower), and a history movie is a reason for a
recommended movie by how much that movie's score falls without it. A movie is left out by emptying its slot,
as padding is: the other movies keep their positions and so their weights. Closing the gap instead moved
every older movie one position newer and credited the left-out movie with their new weights: for a user who
rated five horror films and then four Disney films, Jaws was named for Cinderella. A movie rated low that
pushes a recommendation down (its learned rating scale can be negative) is never named as a reason for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from contract.user_ratings import NO_VALUE
from service.artifacts import ModelVersion

MAX_REASONS = 3
EMPTY_SLOT = ""  # the query tower's padding id: a history slot that holds no movie


def reasons(
    version: ModelVersion,
    user_id: str,
    timestamp: int,
    history: Sequence[str],
    ratings: Sequence[float],
    query: np.ndarray,
    rows: np.ndarray,
) -> list[list[dict[str, Any]]]:
    """For each recommended movie row, up to MAX_REASONS history movies ({movie_id, title}), the largest fall
    in its score first.

    Args:
        history: the movie ids the query read, newest first; ratings: their stars.
        query: float32 [d (+ rating width)], the served query the answer was ranked by; rows: the answer's
            movies in order. Only its tower part is read: the rating term's part does not come from the history.
    """
    count = min(len(history), version.history_length)
    if count == 0 or len(rows) == 0:
        return [[] for _ in range(len(rows))]
    without = [[*history[:p], EMPTY_SLOT, *history[p + 1 :]] for p in range(count)]
    stars = [[*ratings[:p], NO_VALUE, *ratings[p + 1 :]] for p in range(count)]
    queries = version.embed([user_id] * count, [timestamp] * count, without, stars)
    candidates = version.candidate_embeddings[rows]
    tower_query = query[: candidates.shape[1]]
    falls = (candidates @ tower_query)[None, :] - queries @ candidates.T  # [history, items]
    known = np.array([movie in version.row_of_movie for movie in history[:count]], dtype=bool)
    falls[~known] = 0.0  # an id the catalogue lacks is no reason a person can read
    order = np.argsort(-falls, axis=0, kind="stable")
    return [_named(version, history, order[:, item], falls[:, item]) for item in range(len(rows))]


def _named(version: ModelVersion, history: Sequence[str], order: np.ndarray, falls: np.ndarray) -> list[dict[str, Any]]:
    """The first MAX_REASONS distinct movies whose removal lowers the score, in `order` (one rated twice is one)."""
    named: dict[str, dict[str, Any]] = {}
    for position in order.tolist():
        if len(named) == MAX_REASONS or falls[position] <= 0:
            break
        movie_id = history[position]
        named.setdefault(
            movie_id, {"movie_id": movie_id, "title": version.movies[version.row_of_movie[movie_id]]["title"]}
        )
    return list(named.values())
