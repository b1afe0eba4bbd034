"""POST /ratings: stored durably and visible to another process, every bad input a 422, failures a 503."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from contract.ratings import RatingsStore, RatingsStoreError
from service import ratings
from service.config import Settings
from service.schemas import RatingsStored
from tests.service.conftest import TS, assert_error, running_server, serving

Values = tuple[str, str, float, int]  # user_id, movie_id, rating, timestamp


@pytest.fixture(scope="module")
def ratings_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('ratings_api')}/ratings.db"


@pytest.fixture(scope="module")
def client(shared_models_dir: Path, ratings_url: str) -> Iterator[TestClient]:
    with serving(shared_models_dir, ratings_url=ratings_url, max_ratings_per_request=5) as client:
        yield client


@pytest.fixture
def replica(ratings_url: str) -> Iterator[RatingsStore]:
    """A second store on the same file: what another API replica, or the retraining job, reads."""
    with RatingsStore(ratings_url) as store:
        yield store


def post(client: TestClient, body: object) -> list[int]:
    response = client.post("/ratings", json=body)
    assert response.status_code == 201, response.text
    stored = RatingsStored.model_validate(response.json())
    assert stored.stored == len(stored.ids)
    return stored.ids


def stored_values(store: RatingsStore, after_id: int = 0) -> dict[int, Values]:
    """Every committed rating after `after_id`, by id."""
    c = store.ratings_up_to(store.last_id(), after_id=after_id)
    return {
        int(i): (u, m, float(r), int(t))
        for i, u, m, r, t in zip(c.id, c.user_id, c.movie_id, c.rating, c.timestamp, strict=True)
    }


def stored_count(client: TestClient) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith("recsys_ratings_stored_total "))
    return float(line.split()[1])


# --- stored ------------------------------------------------------------------------------------------------


def test_one_rating_is_committed_and_seen_by_another_replica(client: TestClient, replica: RatingsStore) -> None:
    counted = stored_count(client)
    (rating_id,) = post(client, {"user_id": "42", "movie_id": "5", "rating": 4.5, "timestamp": TS})
    assert stored_values(replica, rating_id - 1) == {rating_id: ("42", "5", 4.5, TS)}
    assert [(r.id, r.movie_id) for r in replica.history("42")] == [(rating_id, "5")]
    assert stored_count(client) == counted + 1


def test_a_batch_is_stored_in_order_in_one_answer(client: TestClient, replica: RatingsStore) -> None:
    batch = [
        {"user_id": "7", "movie_id": "1", "rating": 0.5, "timestamp": TS},
        {"user_id": 7, "movie_id": 40, "rating": 5, "timestamp": "1998-01-16T00:00:00Z"},
        {"user_id": "1234567890", "movie_id": "3", "rating": 3.0, "timestamp": "1998-01-17T03:20:01+02:00"},
    ]
    ids = post(client, {"ratings": batch})
    assert len(ids) == 3 and ids == sorted(ids)
    assert stored_values(replica, ids[0] - 1) == {
        ids[0]: ("7", "1", 0.5, TS),
        ids[1]: ("7", "40", 5.0, 884_908_800),
        ids[2]: ("1234567890", "3", 3.0, 885_000_001),
    }


def test_timestamp_defaults_to_now(client: TestClient, replica: RatingsStore) -> None:
    before = time.time()
    (rating_id,) = post(client, {"user_id": "8", "movie_id": "2", "rating": 2.0})
    after = time.time()
    ((_, _, _, timestamp),) = stored_values(replica, rating_id - 1).values()
    assert before - 1 <= timestamp <= after + 1


# --- bad input -----------------------------------------------------------------------------------------------

RATING = {"user_id": "42", "movie_id": "5", "rating": 4.0, "timestamp": TS}
FAR_FUTURE = int(time.time()) + 3 * 86_400


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({**RATING, "user_id": "abc"}, ["body.user_id", "'abc'", "numeric"]),
        ({**RATING, "user_id": "042"}, ["body.user_id", "leading zero"]),
        ({**RATING, "user_id": "1" * 19}, ["body.user_id", "1 to 18 digits"]),
        ({**RATING, "user_id": -3}, ["body.user_id", "'-3'"]),
        ({**RATING, "rating": 0}, ["body.rating", "greater than or equal to 0.5"]),
        ({**RATING, "rating": 5.5}, ["body.rating", "less than or equal to 5"]),
        ({**RATING, "rating": 3.3}, ["body.rating", "multiple of 0.5"]),
        ({**RATING, "rating": True}, ["body.rating", "valid number"]),
        ({**RATING, "rating": "4"}, ["body.rating", "valid number"]),
        ({"user_id": "42", "movie_id": "5"}, ["body.rating", "Field required"]),
        ({**RATING, "timestamp": "yesterday"}, ["body.timestamp", "ISO-8601"]),
        ({**RATING, "timestamp": "885000001"}, ["body.timestamp", "'885000001'"]),  # in JSON, seconds are a number
        ({**RATING, "timestamp": "1969-12-31T23:59:59Z"}, ["body.timestamp", "from 1970"]),
        ({**RATING, "user_id": True}, ["body.user_id", "valid string"]),
        ({**RATING, "movie_id": 2**53}, ["body.movie_id", "send it as a string"]),
        ({**RATING, "movie_id": ""}, ["body.movie_id", "at least 1 character"]),
        ({"ratings": []}, ["body.ratings", "at least 1 item"]),
        ({"ratings": [RATING] * 6}, ["body.ratings", "6 ratings", "at most 5", "RECSYS_MAX_RATINGS_PER_REQUEST"]),
        ({"ratings": [RATING, {**RATING, "rating": 0}]}, ["body.ratings.1.rating"]),
        ({**RATING, "comment": "great"}, ["body.comment", "Extra inputs"]),
        ({"ratings": [{**RATING, "colour": "red"}]}, ["body.ratings.0.colour", "Extra inputs"]),
        ({"ratings": [RATING], "source": "app"}, ["body.source", "Extra inputs"]),
        ([RATING], ["body", "object"]),
    ],
)
def test_bad_ratings_are_refused_naming_the_field_and_nothing_is_stored(
    client: TestClient, replica: RatingsStore, body: object, fragments: list[str]
) -> None:
    count = replica.count()
    assert_error(client.post("/ratings", json=body), 422, "invalid_request", *fragments)
    assert replica.count() == count


@pytest.mark.parametrize(
    ("body", "code", "fragments"),
    [
        ({**RATING, "movie_id": "9999"}, "not_in_catalogue", ["body.movie_id", "'9999'", "not in the catalogue", "40"]),
        ({"ratings": [RATING, {**RATING, "movie_id": "9999"}]}, "not_in_catalogue", ["body.ratings.1.movie_id"]),
        ({**RATING, "timestamp": FAR_FUTURE}, "timestamp_in_future", ["body.timestamp", "more than a day ahead"]),
        (
            {"ratings": [RATING, {**RATING, "timestamp": "3000-01-01T00:00:00Z"}]},
            "timestamp_in_future",
            ["body.ratings.1.timestamp"],
        ),
    ],
)
def test_valid_ratings_the_server_cannot_take_have_their_own_code(
    client: TestClient, replica: RatingsStore, body: object, code: str, fragments: list[str]
) -> None:
    """The schema allows them, but the served catalogue or the server's clock does not: not invalid_request."""
    count = replica.count()
    assert_error(client.post("/ratings", json=body), 422, code, *fragments)
    assert replica.count() == count


def test_malformed_json_is_refused(client: TestClient) -> None:
    response = client.post("/ratings", content=b'{"user_id": ', headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request", "body", "JSON")
    assert_error(client.post("/ratings"), 422, "invalid_request", "body")


def test_a_utf8_bom_is_ignored(client: TestClient, replica: RatingsStore) -> None:
    body = b"\xef\xbb\xbf" + json.dumps({**RATING, "user_id": "43"}).encode()
    response = client.post("/ratings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert [r.movie_id for r in replica.history("43")] == ["5"]


def test_every_unknown_movie_in_a_batch_is_named(client: TestClient) -> None:
    body = {"ratings": [RATING, *({**RATING, "movie_id": f"x{i}"} for i in range(1, 5))]}
    response = client.post("/ratings", json=body)
    assert_error(response, 422, "not_in_catalogue", *(f"body.ratings.{i}.movie_id: 'x{i}'" for i in range(1, 5)))
    assert "body.ratings.0" not in response.json()["error"]["message"]


def test_a_long_list_of_unknown_movies_is_cut_short(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratings, "MAX_NAMED", 2)
    body = {"ratings": [{**RATING, "movie_id": f"x{i}"} for i in range(5)]}
    response = client.post("/ratings", json=body)
    assert_error(response, 422, "not_in_catalogue", "body.ratings.1.movie_id: 'x1'", "(and 3 more)")
    assert "'x2'" not in response.json()["error"]["message"]


# --- unavailable ----------------------------------------------------------------------------------------------


def test_no_model_is_a_503(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with serving(models, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        assert_error(client.post("/ratings", json=RATING), 503, "no_model")


def test_a_failing_database_is_a_503_to_retry(
    client: TestClient, replica: RatingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(ratings: object) -> list[int]:
        raise RatingsStoreError("cannot store ratings at sqlite:///x (OperationalError: disk I/O error)")

    monkeypatch.setattr(client.app.state.service.ratings.store, "add", fail)  # type: ignore[attr-defined]
    counted, count = stored_count(client), replica.count()
    response = client.post("/ratings", json={"ratings": [RATING, RATING]})
    assert_error(response, 503, "ratings_unavailable", "not acknowledged", "retry")
    assert "disk I/O" not in response.text  # the database's details go to the log, not to clients
    assert (stored_count(client), replica.count()) == (counted, count)


def test_a_store_that_cannot_be_opened_stops_startup(shared_models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    url = f"sqlite:///{tmp_path}/a_file/ratings.db"  # its parent is a file: no directory can be made there
    with (
        pytest.raises(RatingsStoreError, match="cannot open the ratings database"),
        serving(shared_models_dir, ratings_url=url),
    ):
        pass


def test_the_store_is_closed_on_shutdown(shared_models_dir: Path, tmp_path: Path) -> None:
    with serving(shared_models_dir, ratings_url=f"sqlite:///{tmp_path}/ratings.db") as client:
        writer = client.app.state.service.ratings  # type: ignore[attr-defined]
        assert writer.store.count() == 0
    with pytest.raises(RuntimeError, match="not open"):
        writer.store  # noqa: B018


# --- documentation and settings -------------------------------------------------------------------------------


def test_settings_never_show_the_database_password() -> None:
    settings = Settings(ratings_url="postgresql+psycopg://recsys:hunter2@db:5432/ratings")
    assert settings.public()["ratings_url"] == "postgresql+psycopg://recsys:***@db:5432/ratings"
    assert "hunter2" not in json.dumps(settings.public())


def test_openapi_documents_both_body_shapes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/ratings"]["post"]
    schema = route["requestBody"]["content"]["application/json"]["schema"]
    assert {tuple(shape["required"]) for shape in schema["oneOf"]} == {("user_id", "movie_id", "rating"), ("ratings",)}
    assert "#/$defs/" not in json.dumps(spec)  # every reference resolves inside the OpenAPI document
    assert {"201", "422", "503"} <= set(route["responses"])


# --- durability: a real server killed mid-stream --------------------------------------------------------------

KILL_AFTER = 150  # acknowledgements before the server is killed
MAX_POSTS = 2000
SECONDS = 60  # for startup, and again for the posting loop


@pytest.fixture
def server(shared_models_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """`python -m service` on a free loopback port, ready; yields the process, its base URL and ratings URL."""
    ratings_url = f"sqlite:///{tmp_path}/ratings.db"
    with running_server(shared_models_dir, ratings_url, tmp_path / "server.log", seconds=SECONDS) as (process, base):
        yield process, base, ratings_url


def test_every_acknowledged_rating_survives_a_sigkill(server: tuple[subprocess.Popen[bytes], str, str]) -> None:
    """Acknowledged means committed: kill -9 mid-stream, and each id the server answered is stored as sent."""
    process, base, ratings_url = server
    acknowledged: dict[int, Values] = {}
    kill_now = threading.Event()

    def killer() -> None:
        kill_now.wait(SECONDS)
        process.kill()  # SIGKILL: no shutdown, no flush; only what was committed survives

    threading.Thread(target=killer, daemon=True).start()
    deadline = time.monotonic() + SECONDS
    with httpx.Client(base_url=base, timeout=5) as http:
        for i in range(MAX_POSTS):
            assert time.monotonic() < deadline, f"only {len(acknowledged)} acknowledged in {SECONDS} s"
            sent = (str(1 + i % 20), str(1 + i % 40), 0.5 * (1 + i % 10), TS + i)
            body = dict(zip(("user_id", "movie_id", "rating", "timestamp"), sent, strict=True))
            try:
                response = http.post("/ratings", json=body)
            except httpx.TransportError:
                break  # the server is gone: this rating was never acknowledged
            assert response.status_code == 201, response.text
            (rating_id,) = response.json()["ids"]
            acknowledged[rating_id] = sent
            if len(acknowledged) == KILL_AFTER:
                kill_now.set()  # posts go on while the other thread kills the server
    assert process.wait(timeout=SECONDS) == -9
    assert len(acknowledged) >= KILL_AFTER

    with RatingsStore(ratings_url) as store:  # a fresh process's view: recovers from the WAL like a restart
        stored = stored_values(store)
    assert {i: stored.get(i) for i in acknowledged} == acknowledged
    # Posts were sequential, so at most the one in flight at the kill was committed without an answer.
    assert len(set(stored) - set(acknowledged)) <= 1
