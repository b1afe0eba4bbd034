"""Reasons on a trained model: the history movies without which a recommendation would score lowest."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from service.artifacts import ModelVersion, load_version
from service.reasons import MAX_REASONS, reasons
from tests.synth import GENRES


@pytest.fixture(scope="module")
def version(tiny_version_dir: Path) -> ModelVersion:
    return load_version(tiny_version_dir, max_batch=64, min_recall=0.5)


def _genre(version: ModelVersion, row: int) -> str:
    return str(version.movies[row]["genres"][0])


def _answer(version: ModelVersion, user_id: str, history: list[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    stars = [5.0] * len(history)
    query = version.embed([user_id], [int(time.time())], [history], [stars])[0]
    scores = version.candidate_embeddings @ query
    scores[[version.row_of_movie[m] for m in history]] = -np.inf  # seen movies are not recommended
    return query, np.argsort(-scores)[:k]


def test_the_planted_cause_is_named(version: ModelVersion) -> None:
    """A new user who rated four Action movies and one Comedy: the Comedy recommendations are there because
    of the Comedy, the Action ones because of Action movies."""
    by_genre = {g: [m["movie_id"] for m in version.movies if m["genres"] == [g]] for g in GENRES}
    comedy = by_genre["Comedy"][0]
    history = [*by_genre["Action"][:2], comedy, *by_genre["Action"][2:4]]
    query, rows = _answer(version, "", history, k=len(version.movies) - len(history))
    why = reasons(version, "", int(time.time()), history, [5.0] * len(history), query, rows)
    first_comedy = next(i for i, row in enumerate(rows.tolist()) if _genre(version, row) == "Comedy")
    first_action = next(i for i, row in enumerate(rows.tolist()) if _genre(version, row) == "Action")
    assert why[first_comedy] and why[first_comedy][0]["movie_id"] == comedy, why[first_comedy]
    assert why[first_action] and why[first_action][0]["movie_id"] != comedy, why[first_action]
    assert all(len(named) <= MAX_REASONS for named in why)
    assert why[first_comedy][0]["title"] == version.movies[version.row_of_movie[comedy]]["title"]


def test_removing_a_named_movie_lowers_the_score_more_than_removing_an_unnamed_one(version: ModelVersion) -> None:
    """Checked independently: each named movie, left out of the history, costs its recommendation more score
    than any movie the reasons left unnamed."""
    now = int(time.time())
    checked = 0
    for user_id in list(version.user_rows)[:12]:
        rows_rated, times, values = version.ratings_of(user_id)
        history, stars = version.history_at(rows_rated, times, values, now + 1)
        query, rows = _answer(version, user_id, history)
        why = reasons(version, user_id, now, history, stars, query, rows)
        for item, named in zip(rows.tolist(), why, strict=True):
            names = {m["movie_id"] for m in named}
            unnamed = [p for p, movie in enumerate(history) if movie not in names]
            if not named or not unnamed:
                continue
            falls = _falls(version, user_id, now, history, stars, query, item)
            named_falls = [falls[history.index(m["movie_id"])] for m in named]
            assert min(named_falls) > 0 and min(named_falls) >= max(falls[p] for p in unnamed)
            checked += 1
    assert checked >= 50


def _falls(
    version: ModelVersion, user_id: str, now: int, history: list[str], stars: list[float], query: np.ndarray, item: int
) -> list[float]:
    """The score `item` loses when each history movie, one at a time, is left out (embedded one by one)."""
    falls = []
    for p in range(len(history)):
        rest, left = [*history[:p], *history[p + 1 :]], [*stars[:p], *stars[p + 1 :]]
        without = version.embed([user_id], [now], [rest], [left])[0]
        falls.append(float(version.candidate_embeddings[item] @ (query - without)))
    return falls


def test_a_user_without_history_gets_no_reasons(version: ModelVersion) -> None:
    query, rows = _answer(version, "1", [])
    assert reasons(version, "1", int(time.time()), [], [], query, rows) == [[] for _ in rows]
