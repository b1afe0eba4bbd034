"""Reasons on a trained model: the history movies without which a recommendation would score lowest."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from contract.query_tower import QueryTower, QueryTowerArrays
from service.artifacts import ModelVersion, load_version
from service.reasons import MAX_REASONS, reasons


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


def _planted_version() -> SimpleNamespace:
    """Six movies in three sibling pairs, (m0, m1), (m2, m3), (m4, m5): the item-item channel's vectors put
    siblings on one axis and the dense part is zero, so a sibling is recommended because of its sibling."""
    movies = [{"movie_id": f"m{i}", "title": f"Movie {i} (1995)", "genres": ["Drama"]} for i in range(6)]
    pairs = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)  # movie i -> axis i // 2
    e, length = 2, 4
    arrays = QueryTowerArrays(
        user_vocabulary=np.array(["[UNK]"]),
        user_oov=0,
        user_embedding=np.zeros((1, e), np.float32),
        timestamp_low=0,
        timestamp_high=10,
        timestamp_boundaries=np.array([5.0], np.float32),
        timestamp_embedding=np.zeros((2, e), np.float32),
        timestamp_mean=np.float32(5),
        timestamp_variance=np.float32(1),
        dense_kernels=(np.zeros((3 * e + 1, 1), np.float32),),
        dense_biases=(np.zeros(1, np.float32),),
        dense_relu=(False,),
        normalize=False,
        history_length=length,
        history_vocabulary=np.array(["", "[UNK]", *(m["movie_id"] for m in movies)]),
        history_oov=1,
        history_embedding=np.zeros((8, e), np.float32),
        history_pooling="positional",
        history_position_logits=np.zeros(length, np.float32),
        item_item_embedding=np.concatenate([np.zeros((2, 3), np.float32), pairs]),
        item_item_position_logits=np.zeros(length, np.float32),
    )
    tower = QueryTower(arrays)
    candidates = np.concatenate([np.zeros((6, 1), np.float32), pairs], axis=1)
    return SimpleNamespace(
        movies=movies,
        row_of_movie={m["movie_id"]: i for i, m in enumerate(movies)},
        candidate_embeddings=candidates,
        history_length=length,
        embed=lambda users, times, histories, ratings=None: tower(users, times, histories, ratings),
    )


def test_the_planted_cause_is_named() -> None:
    """A user who rated m0 and m2 gets m1 because of m0 and m3 because of m2, and m5 (whose sibling they did
    not rate) for no reason."""
    version = _planted_version()
    history = ["m0", "m2"]
    query = version.embed(["u"], [7], [history])[0]
    rows = np.array([1, 3, 5])
    why = reasons(version, "u", 7, history, [5.0, 5.0], query, rows)  # type: ignore[arg-type]
    assert why == [[{"movie_id": "m0", "title": "Movie 0 (1995)"}], [{"movie_id": "m2", "title": "Movie 2 (1995)"}], []]


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
    """The score `item` loses when each history movie, one at a time, is left out (embedded one by one), its
    slot padded so the others keep their positions."""
    falls = []
    for p in range(len(history)):
        rest, left = [*history[:p], "", *history[p + 1 :]], [*stars[:p], 0.0, *stars[p + 1 :]]
        without = version.embed([user_id], [now], [rest], [left])[0]
        falls.append(float(version.candidate_embeddings[item] @ (query - without)))
    return falls


def test_a_user_without_history_gets_no_reasons(version: ModelVersion) -> None:
    query, rows = _answer(version, "1", [])
    assert reasons(version, "1", int(time.time()), [], [], query, rows) == [[] for _ in rows]


def test_explain_through_the_api_names_the_users_own_ratings(tiny_models_dir: Path, tmp_path: Path) -> None:
    """GET and POST /recommend with explain=true, at now and at a 1998 moment: every reason is a movie the user
    rated before the asked moment; without explain, and for a user answered from popularity, there are none."""
    from tests.service.conftest import serving

    with serving(tiny_models_dir, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        rated = {r["movie_id"] for r in client.get("/users/1/ratings", params={"limit": 1000}).json()}
        for moment in ({}, {"timestamp": 885_000_000}):
            body = client.get("/recommend", params={"user_id": "1", "k": 10, "explain": "true", **moment}).json()
            named = [m["movie_id"] for item in body["items"] for m in item["because"]]
            assert body["personalised"] and named and set(named) <= rated
            assert all(len(item["because"]) <= MAX_REASONS for item in body["items"])
        posted = client.post("/recommend", json={"user_id": "1", "k": 10, "explain": True}).json()
        assert all(item["because"] is not None for item in posted["items"])
        plain = client.get("/recommend", params={"user_id": "1", "k": 10}).json()
        assert all(item["because"] is None for item in plain["items"])
        stranger = client.get("/recommend", params={"user_id": "999999", "k": 5, "explain": "true"}).json()
        assert not stranger["personalised"] and all(item["because"] is None for item in stranger["items"])
