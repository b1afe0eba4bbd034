"""A rating's value counts (issue 19): on the tiny trained model, through HTTP, a movie rated 1 or 2 stars is
not read as the user's taste: it is excluded from their answers and pulls nothing towards its neighbours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import serving

COMEDIES, ACTION = ["1", "5", "9", "13"], ["4", "8", "12", "16"]  # tests/synth.py: genre by movie_id % 4


@pytest.fixture(scope="module")
def client(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('disliked')}/ratings.db"
    with serving(tiny_models_dir, ratings_url=url) as client:
        yield client


def _rate(client: TestClient, user_id: str, stars: dict[str, float]) -> None:
    """The user's ratings, stored without a timestamp: at now, as a person rating on the page."""
    body = {"ratings": [{"user_id": user_id, "movie_id": m, "rating": s} for m, s in stars.items()]}
    response = client.post("/ratings", json=body)
    assert response.status_code == 201, response.text


def _answer(client: TestClient, user_id: str, k: int = 10, **params: Any) -> dict[str, Any]:
    response = client.get("/recommend", params={"user_id": user_id, "k": k, **params})  # at now
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["movie_id"] for item in body["items"]]


def test_disliked_movies_are_excluded_and_add_nothing_to_the_query(client: TestClient) -> None:
    """Comedies loved and action films hated give the answer of the comedies alone, less the hated films, with
    the same scores; no reason names a hated film."""
    _rate(client, "7001", {**dict.fromkeys(COMEDIES, 5.0), **dict.fromkeys(ACTION, 1.0)})
    _rate(client, "7002", dict.fromkeys(COMEDIES, 5.0))
    hated = _answer(client, "7001", explain="true")
    loved_only = _answer(client, "7002", k=10 + len(ACTION))
    assert hated["personalised"] and hated["history_used"] == len(COMEDIES)
    expected = [(item["movie_id"], item["score"]) for item in loved_only["items"] if item["movie_id"] not in ACTION]
    served = [(item["movie_id"], item["score"]) for item in hated["items"]]
    assert [m for m, _ in served] == [m for m, _ in expected[:10]]
    assert [s for _, s in served] == pytest.approx([s for _, s in expected[:10]], rel=1e-5)
    named = {reason["movie_id"] for item in hated["items"] for reason in item["because"]}
    assert named and named <= set(COMEDIES)


def test_a_taste_rated_low_is_recommended_less_than_the_same_taste_rated_high(client: TestClient) -> None:
    """Two new users rate the same comedies 5 stars and the same action films 5 or 1 stars: the one who hated
    the action films gets fewer action films."""
    _rate(client, "7003", {**dict.fromkeys(COMEDIES, 5.0), **dict.fromkeys(ACTION, 5.0)})
    _rate(client, "7004", {**dict.fromkeys(COMEDIES, 5.0), **dict.fromkeys(ACTION, 1.0)})

    def action_films(user_id: str) -> int:
        return sum(item["genres"] == ["Action"] for item in _answer(client, user_id)["items"])

    assert action_films("7004") < action_films("7003")


def test_a_new_user_who_only_disliked_is_answered_from_popularity_without_those_films(client: TestClient) -> None:
    _rate(client, "7005", dict.fromkeys(ACTION, 2.0))
    body = _answer(client, "7005")
    assert not body["personalised"] and body["history_used"] == 0
    assert not set(_ids(body)) & set(ACTION)
