"""GET /movies, GET /users/{user_id}/ratings, GET /model/training_curve.png and the page's files: answers, errors."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contract.ratings import Rating, RatingsStore
from service.schemas import Movie, UserRating
from tests.service.conftest import TS, V1, add_training_curve, assert_error, serving
from tests.service.version_factory import Oracle, rated_at, write_current


@pytest.fixture(scope="module")
def oracle(oracles: dict[str, Oracle]) -> Oracle:
    return oracles[V1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, built: tuple[Path, dict[str, Oracle]]) -> tuple[Path, str]:
    """A models dir serving V1 with a training curve, and a ratings database of this module's own."""
    root = tmp_path_factory.mktemp("catalogue_api")
    models = root / "models"
    shutil.copytree(built[0] / V1, models / V1)
    add_training_curve(models / V1)
    write_current(models, V1)
    return models, f"sqlite:///{root}/ratings.db"


@pytest.fixture(scope="module")
def client(served: tuple[Path, str]) -> Iterator[TestClient]:
    models, ratings_url = served
    with serving(models, ratings_url=ratings_url) as client:
        yield client


def get_json(client: TestClient, path: str, **params: object) -> list[dict[str, object]]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- GET /movies --------------------------------------------------------------------------------------------


def matching(oracle: Oracle, text: str) -> list[dict[str, object]]:
    """The catalogue's movies whose title contains `text` in any case, most rated first."""
    return [
        oracle.movies[row]
        for row in oracle.popularity.tolist()
        if text.casefold() in oracle.movies[row]["title"].casefold()
    ]


def test_search_finds_titles_in_any_case_most_rated_first(client: TestClient, oracle: Oracle) -> None:
    found = get_json(client, "/movies", q="MOVIE 1")
    assert found == matching(oracle, "movie 1")
    assert len(found) == 11  # Movie 1 and Movie 10 to 19
    assert all(Movie.model_validate(movie) for movie in found)


def test_search_stops_at_the_limit(client: TestClient, oracle: Oracle) -> None:
    assert len(matching(oracle, "movie")) == 40
    assert get_json(client, "/movies", q="movie") == matching(oracle, "movie")[:20]  # limit defaults to 20
    assert get_json(client, "/movies", q="movie", limit=3) == matching(oracle, "movie")[:3]
    assert get_json(client, "/movies", q="(1993)", limit=100) == matching(oracle, "(1993)")


def test_search_without_a_match_is_an_empty_list(client: TestClient) -> None:
    assert get_json(client, "/movies", q="Casablanca") == []


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({}, ["query.q", "Field required"]),
        ({"q": ""}, ["query.q", "at least 1 character"]),
        ({"q": "x" * 101}, ["query.q", "at most 100 characters"]),
        ({"q": "movie", "limit": 0}, ["query.limit", "greater than or equal to 1"]),
        ({"q": "movie", "limit": 101}, ["query.limit", "less than or equal to 100"]),
        ({"q": "movie", "limit": "many"}, ["query.limit", "valid integer"]),
    ],
)
def test_bad_searches_are_refused(client: TestClient, params: dict[str, object], fragments: list[str]) -> None:
    assert_error(client.get("/movies", params=params), 422, "invalid_request", *fragments)


# --- GET /users/{user_id}/ratings ------------------------------------------------------------------------------


def version_ratings(oracle: Oracle, user_id: str) -> list[dict[str, object]]:
    """The user's ratings in the version's data as the route lists them, newest first."""
    rated = [
        {
            **_named(oracle, oracle.movies[row]["movie_id"]),
            "timestamp": rated_at(i),
            "source": "version",
            "rating": None,
        }
        for i, row in enumerate(oracle.seen[user_id])
    ]
    return rated[::-1]


def _named(oracle: Oracle, movie_id: str) -> dict[str, object]:
    return {"movie_id": movie_id, "title": oracle.movies[int(movie_id) - 1]["title"]}


def stored(oracle: Oracle, movie_id: str, rating: float, timestamp: int) -> dict[str, object]:
    return {**_named(oracle, movie_id), "timestamp": timestamp, "source": "stored", "rating": rating}


def post_ratings(client: TestClient, user_id: str, *ratings: tuple[str, float, int]) -> None:
    body = {"ratings": [{"user_id": user_id, "movie_id": m, "rating": r, "timestamp": t} for m, r, t in ratings]}
    response = client.post("/ratings", json=body)
    assert response.status_code == 201, response.text


def test_a_known_users_ratings_come_from_the_version_newest_first(client: TestClient, oracle: Oracle) -> None:
    rated = get_json(client, "/users/2/ratings")
    assert rated == version_ratings(oracle, "2")
    assert all(UserRating.model_validate(r) for r in rated)


def test_stored_ratings_join_the_versions_by_time(client: TestClient, oracle: Oracle) -> None:
    first = rated_at(0)  # when user 3 rated their first movie in the version's data
    post_ratings(client, "3", ("1", 5.0, TS), ("2", 1.5, first - 1), ("3", 3.0, first))
    version = version_ratings(oracle, "3")
    assert get_json(client, "/users/3/ratings") == [
        stored(oracle, "1", 5.0, TS),
        *version[:-1],
        stored(oracle, "3", 3.0, first),  # the same second as a version rating: the stored one is the later
        version[-1],
        stored(oracle, "2", 1.5, first - 1),
    ]
    assert get_json(client, "/users/3/ratings", limit=2) == [stored(oracle, "1", 5.0, TS), version[0]]


def test_a_new_user_has_only_stored_ratings(client: TestClient, oracle: Oracle) -> None:
    assert get_json(client, "/users/900000001/ratings") == []
    post_ratings(client, "900000001", ("7", 4.0, TS), ("8", 2.0, TS + 10))
    assert get_json(client, "/users/900000001/ratings") == [
        stored(oracle, "8", 2.0, TS + 10),
        stored(oracle, "7", 4.0, TS),
    ]


def test_a_stored_movie_the_catalogue_lacks_has_no_title(client: TestClient, served: tuple[Path, str]) -> None:
    with RatingsStore(served[1]) as store:  # as if an older version's catalogue had this movie
        store.add([Rating("900000002", "gone", 3.5, TS)])
    assert get_json(client, "/users/900000002/ratings") == [
        {"movie_id": "gone", "title": None, "timestamp": TS, "source": "stored", "rating": 3.5}
    ]


def test_an_unknown_user_has_no_ratings(client: TestClient) -> None:
    assert get_json(client, "/users/no-such-user/ratings") == []


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("/users/" + "1" * 65 + "/ratings", ["path.user_id", "at most 64 characters"]),
        ("/users/2/ratings?limit=0", ["query.limit", "greater than or equal to 1"]),
        ("/users/2/ratings?limit=1001", ["query.limit", "less than or equal to 1000"]),
    ],
)
def test_bad_ratings_lookups_are_refused(client: TestClient, path: str, fragments: list[str]) -> None:
    assert_error(client.get(path), 422, "invalid_request", *fragments)


# --- GET /model/training_curve.png --------------------------------------------------------------------------


def test_the_training_curve_is_the_versions_png(client: TestClient, served: tuple[Path, str]) -> None:
    response = client.get("/model/training_curve.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == (served[0] / V1 / "training_curve.png").read_bytes()
    assert response.content.startswith(b"\x89PNG")


def test_a_version_without_a_curve_is_a_404(shared_models_dir: Path, tmp_path: Path) -> None:
    with serving(shared_models_dir, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        response = client.get("/model/training_curve.png")
    assert_error(response, 404, "file_not_found", V1, "training_curve.png")


# --- no model yet ------------------------------------------------------------------------------------------------


def test_without_a_model_the_routes_are_503_and_the_page_still_loads(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with serving(models, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        for path in ("/movies?q=movie", "/users/2/ratings", "/model/training_curve.png"):
            assert_error(client.get(path), 503, "no_model", "no model version is loaded yet")
        assert client.get("/").status_code == 200


# --- the page's files -----------------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js" defer></script>' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]  # no script from anywhere else
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert_error(client.get("/static/missing.js"), 404, "not_found")


def test_openapi_documents_the_new_routes_but_not_the_page(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)
    assert {"200", "422", "503"} <= set(paths["/movies"]["get"]["responses"])
    assert {"200", "422", "503"} <= set(paths["/users/{user_id}/ratings"]["get"]["responses"])
    assert "image/png" in paths["/model/training_curve.png"]["get"]["responses"]["200"]["content"]
