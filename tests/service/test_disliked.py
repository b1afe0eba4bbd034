"""A rating's value counts (issue 19): on the tiny trained model, through HTTP, a movie rated 1 or 2 stars is
not read as the user's taste (it is excluded from their answers and pulls nothing towards its neighbours in
the tower's history), and through the rating term it pushes its kind down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.rating_term import load_term, unit_term, user_part
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


def test_disliked_movies_are_excluded_and_not_read_as_history(client: TestClient) -> None:
    """Comedies loved and action films hated: the history reads the comedies alone, the hated films are not
    answered, and no reason names one. (The hated films still count, through the rating term: next test.)"""
    _rate(client, "7001", {**dict.fromkeys(COMEDIES, 5.0), **dict.fromkeys(ACTION, 1.0)})
    hated = _answer(client, "7001", explain="true")
    assert hated["personalised"] and hated["history_used"] == len(COMEDIES)
    assert not set(_ids(hated)) & set(ACTION)
    named = {reason["movie_id"] for item in hated["items"] for reason in item["because"]}
    assert named and named <= set(COMEDIES)


def test_hated_films_change_the_scores_by_the_rating_term_alone(client: TestClient, tiny_version_dir: Path) -> None:
    """The same loved comedies, with and without four hated action films: the tower reads the same history,
    so the two users' scores differ by the rating term alone. The hated films are folded into that term the
    moment they are stored: the difference is the oracle's (tests/rating_term.py) up to the users' common
    tower spread, a positive constant."""
    _rate(client, "7006", {**dict.fromkeys(COMEDIES, 5.0), **dict.fromkeys(ACTION, 1.0)})
    _rate(client, "7007", dict.fromkeys(COMEDIES, 5.0))

    def scores(user_id: str) -> dict[str, float]:
        return {item["movie_id"]: item["score"] for item in _answer(client, user_id, k=30)["items"]}

    hated, neutral = scores("7006"), scores("7007")
    shared = sorted(set(hated) & set(neutral))
    assert len(shared) >= 10
    term = load_term(tiny_version_dir)
    movies = [m["movie_id"] for m in json.loads((tiny_version_dir / "movies.json").read_text())]
    row = {movie_id: i for i, movie_id in enumerate(movies)}
    comedy_rows, action_rows = [row[m] for m in COMEDIES], [row[m] for m in ACTION]
    both = user_part(term, np.array(comedy_rows + action_rows), np.array([5.0] * 4 + [1.0] * 4))
    loved = user_part(term, np.array(comedy_rows), np.array([5.0] * 4))
    # A movie either user is predicted to like less than their average may have been demoted in their answer's
    # pool (contract/rating_model.py), which the term alone does not say: only the others are compared.
    margin = float(term["demote_margin"])
    items = np.hstack([term["item_bias"][:, None], term["item_factors"]])
    shared = [m for m in shared if min(items[row[m]] @ both, items[row[m]] @ loved) >= -margin]
    assert len(shared) >= 5
    expected = (unit_term(term, both) - unit_term(term, loved))[[row[m] for m in shared]]
    served = np.array([hated[m] - neutral[m] for m in shared])
    scale = float(served @ expected / (expected @ expected))
    assert scale > 0
    np.testing.assert_allclose(served, scale * expected, rtol=1e-3, atol=1e-4 * np.abs(served).max())


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


def test_a_user_who_only_disliked_gets_what_they_will_dislike_last_in_the_popularity_answer(
    client: TestClient, tiny_version_dir: Path
) -> None:
    """The popularity answer of a user with only dislikes, as the oracle (tests/rating_term.py) re-orders it:
    the movies predicted below their average, margin included, follow the others within the demote pool."""
    rated_at, asked_at = 1_700_000_000, 1_700_001_000  # explicit moments: the version's all-time popularity
    body = {"ratings": [{"user_id": "7008", "movie_id": m, "rating": 1.0, "timestamp": rated_at} for m in ACTION]}
    assert client.post("/ratings", json=body).status_code == 201
    plain = _ids(_answer(client, "7009", k=30, timestamp=asked_at))  # no ratings: the ranking itself
    served = _answer(client, "7008", k=20, timestamp=asked_at)
    assert not served["personalised"]
    term = load_term(tiny_version_dir)
    movies = [m["movie_id"] for m in json.loads((tiny_version_dir / "movies.json").read_text())]
    row = {movie_id: i for i, movie_id in enumerate(movies)}
    part = user_part(term, np.array([row[m] for m in ACTION]), np.full(len(ACTION), 1.0))
    items = np.hstack([term["item_bias"][:, None], term["item_factors"]])
    shown = [m for m in plain if m not in ACTION]
    head, pool = shown[: int(term["demote_pool"])], int(term["demote_pool"])
    disliked = [bool(items[row[m]] @ part < -float(term["demote_margin"])) for m in head]
    expected = [m for m, d in zip(head, disliked, strict=True) if not d]
    expected += [m for m, d in zip(head, disliked, strict=True) if d] + shown[pool:]
    assert _ids(served) == expected[:20]
    assert any(disliked) and not all(disliked)  # the answer was re-ordered, so the comparison tests it
