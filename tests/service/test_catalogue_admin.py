"""POST /movies and PATCH /movies/{movie_id}: behind the admin token, every bad input a clear 4xx, committed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contract.catalogue import CatalogueStore, fold
from tests.service.conftest import assert_error, serving

TOKEN = "s3cret"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def catalogue_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ratings.db"


@pytest.fixture
def client(shared_models_dir: Path, catalogue_url: str) -> Iterator[TestClient]:
    with serving(shared_models_dir, ratings_url=catalogue_url, admin_token=TOKEN, max_movies_per_request=3) as c:
        yield c


def known(client: TestClient) -> tuple[str, str]:
    """A movie id of the served version and one of its genres."""
    movie = client.get("/movies", params={"q": "movie"}).json()[0]
    return movie["movie_id"], movie["genres"][0]


def test_adding_needs_the_admin_token(client: TestClient) -> None:
    body = {"movie_id": "900001", "title": "New", "genres": []}
    assert_error(client.post("/movies", json=body), 401, "unauthorized", "RECSYS_ADMIN_TOKEN")
    wrong = client.post("/movies", json=body, headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "unauthorized", "wrong admin token")
    assert_error(client.patch("/movies/900001", json={"available": False}), 401, "unauthorized")


def test_added_movies_are_committed_and_answered(client: TestClient, catalogue_url: str) -> None:
    _, genre = known(client)
    one = client.post(
        "/movies", json={"movie_id": 900001, "title": "Arrival", "genres": [genre], "year": 2016}, headers=ADMIN
    )
    assert one.status_code == 201, one.text
    assert one.json()["added"] == 1
    [movie] = one.json()["movies"]
    assert (movie["movie_id"], movie["title"], movie["genres"], movie["year"], movie["available"]) == (
        "900001",
        "Arrival",
        [genre],
        2016,
        True,
    )
    batch = {
        "movies": [
            {"movie_id": "900002", "title": "B", "genres": []},
            {"movie_id": "900003", "title": "C", "genres": [genre]},
        ]
    }
    two = client.post("/movies", json=batch, headers=ADMIN)
    assert two.status_code == 201 and [m["movie_id"] for m in two.json()["movies"]] == ["900002", "900003"]
    with CatalogueStore(catalogue_url) as replica:
        state = fold({}, replica.changes_after(0))
    assert sorted(state) == ["900001", "900002", "900003"] and state["900001"].title == "Arrival"


def test_bad_movies_get_a_clear_4xx_and_store_nothing(client: TestClient, catalogue_url: str) -> None:
    movie_id, genre = known(client)
    client.post("/movies", json={"movie_id": "900010", "title": "Taken", "genres": []}, headers=ADMIN)

    def post(body: object) -> object:
        return client.post("/movies", json=body, headers=ADMIN)

    assert_error(
        post({"movie_id": movie_id, "title": "Again", "genres": []}), 409, "duplicate_movie", movie_id, "PATCH"
    )
    assert_error(post({"movie_id": "900010", "title": "Again", "genres": []}), 409, "duplicate_movie", "900010")
    assert_error(post({"movie_id": "900011", "title": "X", "genres": ["Nope"]}), 422, "not_in_catalogue", "Nope", genre)
    assert_error(
        post({"movie_id": "900011", "title": "X", "genres": [], "year": 1200}), 422, "invalid_request", "body.year"
    )
    assert_error(
        post({"movie_id": "900011", "title": "X", "genres": [], "year": 2101}), 422, "invalid_request", "body.year"
    )
    assert_error(
        post({"movie_id": "900011", "title": "X", "genres": [], "year": "2001"}), 422, "invalid_request", "body.year"
    )
    assert_error(post({"movie_id": "abc", "title": "X", "genres": []}), 422, "invalid_request", "numeric")
    assert_error(post({"movie_id": "900011", "title": "", "genres": []}), 422, "invalid_request", "body.title")
    assert_error(post({"movie_id": "900011", "title": "X", "genres": [genre, genre]}), 422, "invalid_request", "twice")
    assert_error(post({"movie_id": "900011", "genres": []}), 422, "invalid_request", "body.title")
    assert_error(post({"movie_id": "900011", "title": "X", "genres": [], "rating": 5}), 422, "invalid_request")
    twice = {"movies": [{"movie_id": "900012", "title": "A", "genres": []}] * 2}
    assert_error(post(twice), 409, "duplicate_movie", "more than once")
    many = {"movies": [{"movie_id": str(900020 + i), "title": "A", "genres": []} for i in range(4)]}
    assert_error(post(many), 422, "invalid_request", "RECSYS_MAX_MOVIES_PER_REQUEST")
    mixed = {
        "movies": [
            {"movie_id": "900013", "title": "A", "genres": []},
            {"movie_id": "900010", "title": "B", "genres": []},
        ]
    }
    assert_error(post(mixed), 409, "duplicate_movie", "900010")
    with CatalogueStore(catalogue_url) as replica:
        assert [c.movie_id for c in replica.changes_after(0)] == ["900010"]


def test_a_patch_changes_only_what_it_names(client: TestClient) -> None:
    movie_id, genre = known(client)
    client.post("/movies", json={"movie_id": "900030", "title": "Old", "genres": [], "year": 2001}, headers=ADMIN)
    changed = client.patch("/movies/900030", json={"title": "New", "genres": [genre]}, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["title"], body["genres"], body["year"], body["available"]) == ("New", [genre], 2001, True)
    withdrawn = client.patch(f"/movies/{movie_id}", json={"available": False}, headers=ADMIN).json()
    assert (withdrawn["movie_id"], withdrawn["available"]) == (movie_id, False) and withdrawn["title"]
    assert withdrawn["change_id"] > body["change_id"]


def test_bad_patches_get_a_clear_4xx(client: TestClient) -> None:
    assert_error(
        client.patch("/movies/999999", json={"available": False}, headers=ADMIN), 404, "unknown_movie", "999999"
    )
    assert_error(client.patch("/movies/900040", json={}, headers=ADMIN), 422, "invalid_request", "at least one")
    nulled = client.patch("/movies/900040", json={"title": None}, headers=ADMIN)
    assert_error(nulled, 422, "invalid_request", "leave a field out")
    movie_id, _ = known(client)
    patch = client.patch(f"/movies/{movie_id}", json={"genres": ["Nope"]}, headers=ADMIN)
    assert_error(patch, 422, "not_in_catalogue", "Nope")
    assert_error(client.patch(f"/movies/{movie_id}", json={"available": "no"}, headers=ADMIN), 422, "invalid_request")
    assert_error(client.patch(f"/movies/{movie_id}", json={"year": 3000}, headers=ADMIN), 422, "invalid_request")


def test_the_routes_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    post, patch = paths["/movies"]["post"], paths["/movies/{movie_id}"]["patch"]
    assert {"201", "401", "403", "409", "422"} <= set(post["responses"])
    assert {"200", "401", "404", "422"} <= set(patch["responses"])
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert "maxItems" in str(schema) and "1870" in str(schema)


def test_a_committed_movie_is_acknowledged_even_when_it_cannot_be_embedded_yet(
    models_dir: Path, catalogue_url: str
) -> None:
    with serving(models_dir, ratings_url=catalogue_url, admin_token=TOKEN) as client:
        version = client.get("/model").json()["version"]
        shutil.rmtree(models_dir / version / "candidate_model")  # the tower is loaded on the first new movie
        answer = client.post("/movies", json={"movie_id": "900050", "title": "Unplaced", "genres": []}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        assert answer.json()["movies"][0]["title"] == "Unplaced"
        assert client.get("/movies", params={"q": "unplaced"}).json() == []  # not served until it can be embedded
    with CatalogueStore(catalogue_url) as replica:
        assert [c.movie_id for c in replica.changes_after(0)] == ["900050"]
