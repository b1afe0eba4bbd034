"""A user's ratings count the moment they are stored: seen lists, histories and new users, on every replica."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from service import recommender
from tests.service.conftest import TS, V1, assert_same_ranking, serving
from tests.service.version_factory import Oracle


def _ranking(client: TestClient, user_id: str, **params: object) -> dict:  # type: ignore[type-arg]
    response = client.get("/recommend", params={"user_id": user_id, "timestamp": TS, "k": 5, **params})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _rate(client: TestClient, user_id: str, movie_id: str, timestamp: int) -> None:
    body = {"user_id": user_id, "movie_id": movie_id, "rating": 4.5, "timestamp": timestamp}
    response = client.post("/ratings", json=body)
    assert response.status_code == 201, response.text


def test_a_rating_on_one_replica_changes_the_next_answer_on_another(
    models_dir: Path, oracles: dict[str, Oracle], tmp_path: Path
) -> None:
    oracle = oracles[V1]
    url = f"sqlite:///{tmp_path}/ratings.db"
    with serving(models_dir, ratings_url=url) as first, serving(models_dir, ratings_url=url) as second:
        before = _ranking(second, "1")
        top = before["items"][0]["movie_id"]
        _rate(first, "1", top, TS - 1)  # the user rates the first recommendation, just before asking again
        after = _ranking(second, "1")
    assert top not in [item["movie_id"] for item in after["items"]]
    assert after["history_used"] == min(before["history_used"] + 1, 5)
    history = [top, *oracle.history("1", TS)]
    exclude = oracle.seen_rows("1") | {int(top) - 1}
    assert_same_ranking(after, oracle.top_k("1", TS, 5, exclude, history=history))


def test_a_new_user_is_personalised_from_their_first_ratings(
    shared_models_dir: Path, oracles: dict[str, Oracle], tmp_path: Path
) -> None:
    oracle = oracles[V1]
    with serving(shared_models_dir, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        stranger = _ranking(client, "5000")
        assert not stranger["personalised"] and not stranger["known_user"]
        assert all(item["score"] is None for item in stranger["items"])  # the popularity fallback
        _rate(client, "5000", "3", TS - 20)
        _rate(client, "5000", "9", TS - 10)
        _rate(client, "5000", "12", TS + 10)  # rated after the asked moment: excluded, not history
        body = _ranking(client, "5000")
    assert body["personalised"] and not body["known_user"] and body["history_used"] == 2
    assert_same_ranking(body, oracle.top_k("5000", TS, 5, {2, 8, 11}, history=["9", "3"]))


def test_a_rating_stored_in_the_same_second_is_history_at_now(shared_models_dir: Path, tmp_path: Path) -> None:
    """Rate, then ask at once without a timestamp: the rating came first, so it is history, within one second
    or not. Asked at an explicit moment, a rating in that same second is not before it (as offline)."""
    with serving(shared_models_dir, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        response = client.post("/ratings", json={"user_id": "6000", "movie_id": "3", "rating": 5})  # stored at now
        assert response.status_code == 201, response.text
        stored_at = client.get("/users/6000/ratings").json()[0]["timestamp"]
        at_now = client.get("/recommend", params={"user_id": "6000", "k": 5}).json()
        same_second = client.get("/recommend", params={"user_id": "6000", "k": 5, "timestamp": stored_at}).json()
    assert at_now["personalised"] and at_now["history_used"] == 1
    assert "3" not in [item["movie_id"] for item in at_now["items"]]
    assert not same_second["personalised"] and same_second["history_used"] == 0


def test_a_request_may_carry_the_history_of_a_user_the_service_never_saw(
    shared_models_dir: Path, oracles: dict[str, Oracle]
) -> None:
    oracle = oracles[V1]
    with serving(shared_models_dir) as client:
        response = client.post("/recommend", json={"user_id": "7000", "timestamp": TS, "k": 5, "history": ["9", "3"]})
    body = response.json()
    assert response.status_code == 200 and body["personalised"] and body["history_used"] == 2
    assert_same_ranking(body, oracle.top_k("7000", TS, 5, {2, 8}, history=["9", "3"]))


@pytest.mark.parametrize("timestamp", [None, 4_102_444_800])  # now, and the year 2100
def test_after_the_data_every_moment_is_its_end(
    shared_models_dir: Path, oracles: dict[str, Oracle], timestamp: int | None
) -> None:
    oracle = oracles[V1]
    end = 890_000_000  # the factory's training range ends here
    with serving(shared_models_dir) as client:
        params = {"user_id": "2", "k": 5} | ({} if timestamp is None else {"timestamp": timestamp})
        body = client.get("/recommend", params=params).json()
    assert body["effective_timestamp"] == end and body["timestamp"] > end
    assert_same_ranking(body, oracle.top_k("2", end + 1, 5, oracle.seen_rows("2")))


def test_a_known_users_query_at_now_is_kept_until_they_rate(
    shared_models_dir: Path, oracles: dict[str, Oracle], tmp_path: Path
) -> None:
    """At now every input of a known user's query is fixed, so the version keeps it: asking again runs no
    tower. A rating stored since changes the inputs: the tower runs again and the answer moves at once."""
    oracle = oracles[V1]
    end = 890_000_000  # the factory's training range ends here
    with serving(shared_models_dir, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        version = client.app.state.service.registry.require()  # type: ignore[attr-defined]
        embedded: list[list[str]] = []
        tower = version.embed

        def counting(user_ids: list[str], *args: object) -> object:
            embedded.append(list(user_ids))
            return tower(user_ids, *args)  # type: ignore[arg-type]

        version.embed = counting
        first = client.get("/recommend", params={"user_id": "2", "k": 5}).json()
        again = client.get("/recommend", params={"user_id": "2", "k": 5}).json()
        past = client.get("/recommend", params={"user_id": "2", "k": 5, "timestamp": TS}).json()
        assert embedded == [["2"], ["2"]]  # the first at now and the one at an explicit moment
        top = first["items"][0]["movie_id"]
        _rate(client, "2", top, end + 5)
        rated = client.get("/recommend", params={"user_id": "2", "k": 5}).json()
    assert first["items"] == again["items"] and past["effective_timestamp"] == TS
    assert_same_ranking(again, oracle.top_k("2", end + 1, 5, oracle.seen_rows("2")))
    assert len(embedded) == 3 and top not in [item["movie_id"] for item in rated["items"]]
    assert_same_ranking(
        rated,
        oracle.top_k(
            "2", end + 1, 5, oracle.seen_rows("2") | {int(top) - 1}, history=[top, *oracle.history("2", end + 1)]
        ),
    )


def test_a_known_users_answer_at_now_is_kept_until_they_rate_on_another_replica(
    models_dir: Path, oracles: dict[str, Oracle], tmp_path: Path
) -> None:
    """A plain request at now is answered from what the version kept (no search), whatever k up to what was
    ranked; a filtered one is searched; a rating stored through another replica is read at once."""
    oracle = oracles[V1]
    end = 890_000_000  # the factory's training range ends here
    url = f"sqlite:///{tmp_path}/ratings.db"
    with serving(models_dir, ratings_url=url) as first, serving(models_dir, ratings_url=url) as second:
        ranked = mock.patch.object(recommender, "_allowed", wraps=recommender._allowed)  # each answer ranked afresh
        with ranked as searched:
            first_answer = second.get("/recommend", params={"user_id": "2", "k": 5}).json()
            again = second.get("/recommend", params={"user_id": "2", "k": 5}).json()
            shorter = second.get("/recommend", params={"user_id": "2", "k": 3}).json()
            assert searched.call_count == 1
            genre = first_answer["items"][0]["genres"][0]
            filtered = second.get("/recommend", params={"user_id": "2", "k": 5, "genres": genre}).json()
            assert searched.call_count == 2 and all(genre in item["genres"] for item in filtered["items"])
            top = first_answer["items"][0]["movie_id"]
            _rate(first, "2", top, end + 5)
            rated = second.get("/recommend", params={"user_id": "2", "k": 5}).json()
            assert searched.call_count == 3
    assert again["items"] == first_answer["items"] and shorter["items"] == first_answer["items"][:3]
    assert_same_ranking(again, oracle.top_k("2", end + 1, 5, oracle.seen_rows("2")))
    assert top not in [item["movie_id"] for item in rated["items"]]
    assert_same_ranking(
        rated,
        oracle.top_k(
            "2", end + 1, 5, oracle.seen_rows("2") | {int(top) - 1}, history=[top, *oracle.history("2", end + 1)]
        ),
    )


@pytest.mark.parametrize(("most", "ranked"), [(2, 2), (1, 4), (0, 4)])
def test_at_most_at_now_users_are_kept(
    shared_models_dir: Path, oracles: dict[str, Oracle], most: int, ranked: int
) -> None:
    """RECSYS_AT_NOW_USERS bounds what a version keeps: past it the oldest kept user is dropped (asked again, they
    are ranked afresh); 0 keeps nobody. The answers are the same either way."""
    oracle = oracles[V1]
    end = 890_000_000  # the factory's training range ends here
    ranked_afresh = mock.patch.object(recommender, "_allowed", wraps=recommender._allowed)
    with serving(shared_models_dir, at_now_users=most) as client, ranked_afresh as searched:
        answers = [client.get("/recommend", params={"user_id": u, "k": 5}).json() for u in ("1", "2", "1", "2")]
    assert searched.call_count == ranked
    for user, answer in zip(("1", "2", "1", "2"), answers, strict=True):
        assert_same_ranking(answer, oracle.top_k(user, end + 1, 5, oracle.seen_rows(user)))
