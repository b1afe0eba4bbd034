"""What a known user's request at now keeps: past the model's clamp range, with every one of their ratings in
the version and nothing stored since, none of its inputs change until they rate again, and most traffic asks
at now. The version (service/artifacts.py) holds one `AtNow` per such user; service/recommender.py fills it.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class UserState:
    """What the service knows about the asking user at the asked time."""

    seen: np.ndarray  # movie rows the user rated (any time): excluded by default
    history: list[str]  # movie ids rated before the query time (and the request's own), newest first
    history_ratings: list[float]  # the stars of each history movie (NO_VALUE for the request's own ids)
    known_user: bool  # the version was trained on this user_id
    rating_part: np.ndarray | None = None  # the user's part of the rating term (None: the version has none)
    now_key: int | None = None  # the version keeps what this user's requests at now compute under it


@dataclass
class AtNow:
    """One known user's fixed inputs at now, and what requests have computed from them so far."""

    state: UserState
    query: np.ndarray | None = None  # the served query, once a request has embedded it
    # A plain request's answer (no genres, no exclusions but the seen movies) by how many movies were ranked:
    # the best allowed movies after the rating term's re-ordering, rows and scores.
    answers: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def answer(self, ranked: int, prefix: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """The kept answer of `ranked` movies; with `prefix` (nothing re-orders a ranking's head, so the best
        n are the first n of any deeper one) the shallowest kept answer at least that deep."""
        if ranked in self.answers:
            return self.answers[ranked]
        deeper = [n for n in self.answers if n >= ranked] if prefix else []
        return self.answers[min(deeper)] if deeper else None
