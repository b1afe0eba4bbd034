"""Every route's happy path and every error, checked against the NumPy oracle of the served version."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import recommender, similar
from service.schemas import BatchRecommendResponse, RecommendResponse, SimilarResponse
from tests.service.conftest import (
    TS,
    V1,
    assert_error,
    assert_same_ranking,
    expected_items,
    serving,
    without_ids,
)
from tests.service.version_factory import RARE_GENRE, Oracle


@pytest.fixture(scope="module")
def client(shared_models_dir: Path) -> Iterator[TestClient]:
    with serving(shared_models_dir, admin_token="s3cret", max_k=50, max_batch_requests=4) as client:
        yield client


@pytest.fixture(scope="module")
def oracle(oracles: dict[str, Oracle]) -> Oracle:
    return oracles[V1]


def recommend(client: TestClient, **body: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/recommend", json={"timestamp": TS, **body})
    assert response.status_code == 200, response.text
    RecommendResponse.model_validate(response.json())  # the hand-built JSON matches the declared schema
    assert len(response.json()["recommendation_id"]) == 32
    return without_ids(response.json())  # type: ignore[no-any-return]


# --- /recommend: answers --------------------------------------------------------------------------------


def test_get_answers_the_top_k_unseen_movies(client: TestClient, oracle: Oracle) -> None:
    response = client.get("/recommend", params={"user_id": "1", "timestamp": TS, "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "1" and body["timestamp"] == TS and body["model_version"] == V1
    assert body["known_user"] is True
    assert_same_ranking(body, expected_items(oracle, "1", 5))
    assert not {int(item["movie_id"]) - 1 for item in body["items"]} & oracle.seen_rows("1")
    assert body["items"][0].keys() == {"rank", "movie_id", "title", "genres", "score", "because"}
    assert body["items"][0]["because"] is None  # only with explain=true


def test_post_answers_like_get(client: TestClient) -> None:
    get = without_ids(client.get("/recommend", params={"user_id": "3", "timestamp": TS, "k": 7}).json())
    assert recommend(client, user_id="3", k=7) == get


def test_k_defaults_to_10_and_timestamp_to_now(client: TestClient, oracle: Oracle) -> None:
    before = int(time.time())
    body = client.get("/recommend", params={"user_id": "2"}).json()
    assert before <= body["timestamp"] <= int(time.time()) + 1
    assert len(body["items"]) == 10
    assert_same_ranking(body, expected_items(oracle, "2", 10, timestamp=body["timestamp"]))


def test_timestamp_changes_the_answer_and_iso_equals_unix_seconds(client: TestClient, oracle: Oracle) -> None:
    iso = datetime.fromtimestamp(TS, UTC).isoformat()
    zulu = datetime.fromtimestamp(TS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    east = datetime.fromtimestamp(TS, timezone(timedelta(hours=5, minutes=30))).isoformat()
    by_iso = recommend(client, user_id="4", timestamp=iso, k=5)
    assert by_iso == recommend(client, user_id="4", timestamp=TS, k=5)
    assert by_iso == recommend(client, user_id="4", timestamp=zulu, k=5)
    assert by_iso == recommend(client, user_id="4", timestamp=east, k=5)
    assert by_iso == recommend(client, user_id="4", timestamp=float(TS), k=5.0)  # JSON Schema: 5.0 is an integer
    assert by_iso == without_ids(client.get("/recommend", params={"user_id": "4", "timestamp": iso, "k": 5}).json())
    later = recommend(client, user_id="4", timestamp=TS + 200_000_000, k=5)
    assert_same_ranking(later, expected_items(oracle, "4", 5, timestamp=TS + 200_000_000))
    assert later["items"] != by_iso["items"]


def test_integer_user_id_is_coerced_to_a_string(client: TestClient) -> None:
    assert recommend(client, user_id=5, k=3) == recommend(client, user_id="5", k=3)
    assert recommend(client, user_id=5.0, k=3) == recommend(client, user_id="5", k=3)


def test_exclude_seen_false_can_return_seen_movies(client: TestClient, oracle: Oracle) -> None:
    body = recommend(client, user_id="1", k=40, exclude_seen=False)
    assert_same_ranking(body, expected_items(oracle, "1", 40, exclude_seen=False))
    assert oracle.seen_rows("1") <= {int(item["movie_id"]) - 1 for item in body["items"]}


def test_explicit_exclude_list_is_honoured_in_post_and_get(client: TestClient, oracle: Oracle) -> None:
    first = [item["movie_id"] for item in recommend(client, user_id="6", k=3)["items"]]
    excluded = (first[0], first[2], "no-such-movie")  # unknown ids are ignored
    body = recommend(client, user_id="6", k=5, exclude=list(excluded))
    assert_same_ranking(body, expected_items(oracle, "6", 5, exclude=excluded[:2]))
    params = {"user_id": "6", "timestamp": TS, "k": 5, "exclude": list(excluded)}
    assert without_ids(client.get("/recommend", params=params).json()) == body


def test_genre_filter_keeps_only_those_genres(client: TestClient, oracle: Oracle) -> None:
    body = recommend(client, user_id="7", k=6, genres=["Comedy", "Horror"])
    assert all({"Comedy", "Horror"} & set(item["genres"]) for item in body["items"])
    assert_same_ranking(body, expected_items(oracle, "7", 6, genres=("Comedy", "Horror")))
    params = {"user_id": "7", "timestamp": TS, "k": 6, "genres": ["Comedy", "Horror"]}
    assert without_ids(client.get("/recommend", params=params).json()) == body


def test_a_too_shallow_filtered_search_is_completed_exactly(
    client: TestClient, oracle: Oracle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recommender, "search_depth", lambda k, *_: k)  # the index returns only k hits
    body = recommend(client, user_id="7", k=6, genres=["Horror"])
    assert len(body["items"]) == 6 and all("Horror" in item["genres"] for item in body["items"])
    assert_same_ranking(body, expected_items(oracle, "7", 6, genres=("Horror",)))


def test_rare_genre_returns_what_the_catalogue_has(client: TestClient, oracle: Oracle) -> None:
    body = recommend(client, user_id="8", k=10, genres=[RARE_GENRE], exclude_seen=False)
    assert {item["movie_id"] for item in body["items"]} == {"4", "8"}
    assert_same_ranking(body, expected_items(oracle, "8", 10, genres=(RARE_GENRE,), exclude_seen=False))


def test_a_filter_that_leaves_few_movies_scores_them_exactly_without_the_index(
    client: TestClient, oracle: Oracle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rare genre in a large catalogue would need a search deeper than the movies it allows: skip it."""
    from service.artifacts import ModelVersion

    depths: list[int] = []
    search = ModelVersion.search

    def spy(self: ModelVersion, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        depths.append(depth)
        return search(self, queries, depth)

    monkeypatch.setattr(ModelVersion, "search", spy)
    for at in ({"timestamp": TS}, {"timestamp": None}):  # inside the data, and now
        body = recommend(client, user_id="8", k=10, genres=[RARE_GENRE], exclude_seen=False, **at)
        assert {item["movie_id"] for item in body["items"]} == {"4", "8"}
    assert depths == []
    recommend(client, user_id="8", k=3)  # unfiltered, the index is searched
    assert depths and min(depths) >= 3


def test_user_who_saw_almost_everything_gets_the_rest(client: TestClient, oracle: Oracle) -> None:
    heavy = oracle.user_ids[-1]
    body = recommend(client, user_id=heavy, k=10)
    assert sorted(item["movie_id"] for item in body["items"]) == ["1", "2", "3", "4", "5"]
    assert_same_ranking(body, expected_items(oracle, heavy, 10))


def test_everything_excluded_gives_an_empty_list(client: TestClient, oracle: Oracle) -> None:
    heavy = oracle.user_ids[-1]
    body = recommend(client, user_id=heavy, k=10, exclude=["1", "2", "3", "4", "5"])
    assert body["items"] == [] and body["known_user"] is True


def test_k_at_the_maximum_is_allowed(client: TestClient, oracle: Oracle) -> None:
    body = recommend(client, user_id="9", k=50)
    assert len(body["items"]) == len(oracle.movies) - len(oracle.seen_rows("9"))
    assert len({item["movie_id"] for item in body["items"]}) == len(body["items"])


# --- /recommend: unknown users ----------------------------------------------------------------------------


def test_unknown_user_gets_the_popularity_ranking(client: TestClient, oracle: Oracle) -> None:
    body = recommend(client, user_id="stranger", k=5)
    assert body["known_user"] is False
    popular = [oracle.movies[row]["movie_id"] for row in oracle.popularity[:5]]
    assert [item["movie_id"] for item in body["items"]] == popular
    assert all(item["score"] is None for item in body["items"])


def test_unknown_user_popularity_honours_exclude_and_genres(client: TestClient, oracle: Oracle) -> None:
    popular = [oracle.movies[row] for row in oracle.popularity]
    comedies = [m["movie_id"] for m in popular if "Comedy" in m["genres"]]
    body = recommend(client, user_id="stranger", k=3, genres=["Comedy"], exclude=[comedies[0]])
    assert [item["movie_id"] for item in body["items"]] == comedies[1:4]


def test_unknown_user_can_be_a_404(shared_models_dir: Path) -> None:
    with serving(shared_models_dir, unknown_user="404") as client:
        response = client.get("/recommend", params={"user_id": "stranger"})
        assert_error(response, 404, "unknown_user", "'stranger'", "RECSYS_UNKNOWN_USER")
        assert client.get("/recommend", params={"user_id": "1"}).status_code == 200


# --- /recommend: bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({}, ["query.user_id", "Field required"]),
        ({"user_id": ""}, ["query.user_id"]),
        ({"user_id": "1", "k": 0}, ["query.k", "greater than or equal to 1"]),
        ({"user_id": "1", "k": -3}, ["query.k"]),
        ({"user_id": "1", "k": "ten"}, ["query.k", "integer"]),
        ({"user_id": "1", "timestamp": "yesterday"}, ["query.timestamp", "'yesterday'", "ISO-8601"]),
        ({"user_id": "1", "timestamp": "-5"}, ["query.timestamp", "greater than or equal to 0"]),
        ({"user_id": "1", "timestamp": "253402300800"}, ["query.timestamp", "at most 253402300799"]),
        ({"user_id": "1", "timestamp": "1960-01-01T00:00:00Z"}, ["query.timestamp", "from 1970"]),
        ({"user_id": "1", "k": "true"}, ["query.k", "integer"]),
        ({"user_id": "1", "k": 51}, ["k=51", "maximum of 50", "RECSYS_MAX_K"]),
        ({"user_id": "1", "exclude_seen": "perhaps"}, ["query.exclude_seen"]),
        ({"user_id": "1", "colour": "red"}, ["query.colour", "Extra inputs"]),
    ],
)
def test_get_rejects_bad_parameters(client: TestClient, params: dict[str, object], fragments: list[str]) -> None:
    assert_error(client.get("/recommend", params=params), 422, "invalid_request", *fragments)


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"k": 3}, ["body.user_id", "Field required"]),
        ({"user_id": "1", "k": 0}, ["body.k"]),
        ({"user_id": "1", "timestamp": True}, ["body.timestamp", "not a boolean"]),
        ({"user_id": "1", "timestamp": "1997-13-45"}, ["body.timestamp", "ISO-8601"]),
        ({"user_id": "1", "timestamp": "1997-11-30T10:45:27"}, ["body.timestamp", "with Z or an offset"]),
        ({"user_id": "1", "timestamp": "1997-02-30T10:45:27Z"}, ["body.timestamp", "'1997-02-30T10:45:27Z'"]),
        ({"user_id": "1", "timestamp": "879024327"}, ["body.timestamp", "'879024327'"]),  # a number, in JSON
        ({"user_id": "1", "timestamp": -1}, ["body.timestamp", "greater than or equal to 0"]),
        ({"user_id": "1", "timestamp": 879024327.5}, ["body.timestamp", "integer"]),
        ({"user_id": "1", "k": True}, ["body.k", "valid integer"]),
        ({"user_id": "1", "k": "10"}, ["body.k", "valid integer"]),
        ({"user_id": "1", "k": 2.5}, ["body.k", "integer"]),
        ({"user_id": "1", "exclude": [0]}, ["body.exclude.0", "valid string"]),
        ({"user_id": "1", "history": [50]}, ["body.history.0", "valid string"]),
        ({"user_id": "1", "exclude_seen": "false"}, ["body.exclude_seen", "valid boolean"]),
        ({"user_id": True}, ["body.user_id", "valid string"]),
        ({"user_id": -1}, ["body.user_id", "'-1'", "send it as a string"]),
        ({"user_id": 2**53}, ["body.user_id", "outside 0 to 9007199254740991"]),
        ({"user_id": "1", "exlude": ["50"]}, ["body.exlude", "Extra inputs"]),
        ({"user_id": "1", "genres": "Comedy"}, ["body.genres", "array"]),
        ({"user_id": ["1"]}, ["body.user_id"]),
        ([1, 2], ["body"]),
    ],
)
def test_post_rejects_bad_bodies(client: TestClient, body: object, fragments: list[str]) -> None:
    assert_error(client.post("/recommend", json=body), 422, "invalid_request", *fragments)


@pytest.mark.parametrize("path", ["/recommend", "/recommend/batch", "/ratings", "/admin/pin"])
def test_every_body_route_answers_malformed_json_alike(client: TestClient, path: str) -> None:
    headers = {"content-type": "application/json", "Authorization": "Bearer s3cret"}
    for body in (b'{"user_id": ', b'{"user_id": "\xff"}', b"", b"\xef\xbb\xbf"):
        assert_error(client.post(path, content=body, headers=headers), 422, "invalid_request", "body", "JSON")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/recommend", {"user_id": "1", "timestamp": TS}),
        ("/recommend/batch", {"requests": [{"user_id": "1", "timestamp": TS}]}),
        ("/admin/pin", {"version": V1}),
    ],
)
def test_every_body_route_ignores_a_utf8_bom(client: TestClient, path: str, body: dict[str, object]) -> None:
    """As /ratings does (tests/service/test_ratings_api.py): a client that writes one is still understood."""
    headers = {"content-type": "application/json", "Authorization": "Bearer s3cret"}
    plain = client.post(path, json=body, headers=headers)
    with_bom = client.post(path, content=b"\xef\xbb\xbf" + json.dumps(body).encode(), headers=headers)
    assert plain.status_code == 200 and without_ids(with_bom.json()) == without_ids(plain.json()), with_bom.text
    client.delete("/admin/pin", headers=headers)


def test_k_above_the_maximum_says_which_setting(client: TestClient) -> None:
    response = client.get("/recommend", params={"user_id": "1", "k": 51})
    assert_error(response, 422, "invalid_request", "k=51", "maximum of 50", "RECSYS_MAX_K")


def test_unknown_genre_lists_the_known_ones(client: TestClient) -> None:
    response = client.post("/recommend", json={"user_id": "1", "genres": ["Comdy"]})
    assert_error(response, 422, "not_in_catalogue", "'Comdy'", V1, "Comedy", "Drama")


# --- /recommend/batch ---------------------------------------------------------------------------------------


def test_batch_answers_each_request_as_alone(client: TestClient) -> None:
    requests = [
        {"user_id": "1", "timestamp": TS, "k": 3},
        {"user_id": "stranger", "timestamp": TS, "k": 2},
        {"user_id": 2, "timestamp": TS, "k": 4, "genres": ["Drama"]},
    ]
    response = client.post("/recommend/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    results = BatchRecommendResponse.model_validate(response.json()).model_dump()["results"]
    assert [r["user_id"] for r in results] == ["1", "stranger", "2"]
    assert len({r["recommendation_id"] for r in results}) == 3  # each answer its own
    assert without_ids(results) == [recommend(client, **request) for request in requests]


def test_batch_errors(client: TestClient) -> None:
    too_many = {"requests": [{"user_id": "1"}] * 5}
    assert_error(client.post("/recommend/batch", json=too_many), 422, "invalid_request", "5 requests", "at most 4")
    assert_error(client.post("/recommend/batch", json={"requests": []}), 422, "invalid_request", "body.requests")
    bad_item = {"requests": [{"user_id": "1"}, {"user_id": "2", "k": 0}]}
    assert_error(client.post("/recommend/batch", json=bad_item), 422, "invalid_request", "body.requests.1.k")
    bad_genre = {"requests": [{"user_id": "1"}, {"user_id": "2", "genres": ["Nope"]}]}
    assert_error(client.post("/recommend/batch", json=bad_genre), 422, "not_in_catalogue", "requests[1]", "'Nope'")
    over_k = {"requests": [{"user_id": "1", "k": 51}]}
    assert_error(client.post("/recommend/batch", json=over_k), 422, "invalid_request", "requests[0]", "k=51")


# --- /movies/{movie_id}/similar -----------------------------------------------------------------------------


def test_similar_movies_blend_embedding_cosine_item_knn_and_genres(client: TestClient, oracle: Oracle) -> None:
    response = client.get("/movies/3/similar", params={"k": 4})
    assert response.status_code == 200
    body = SimilarResponse.model_validate(response.json())
    assert (body.movie_id, body.title, body.model_version) == ("3", oracle.movies[2]["title"], V1)
    rated = np.zeros((len(oracle.seen), len(oracle.movies)))
    for user, rows in enumerate(oracle.seen.values()):
        rated[user, rows] = 1.0
    raters = rated.sum(axis=0)
    knn = rated.T @ rated[:, 2] / np.sqrt(raters * raters[2] + 1.0)
    unit = oracle.candidate_embeddings / np.linalg.norm(oracle.candidate_embeddings, axis=1, keepdims=True)
    genres = [set(movie["genres"]) for movie in oracle.movies]
    overlap = np.array([len(g & genres[2]) / max(len(g | genres[2]), 1) for g in genres])
    scores = (
        similar.EMBEDDING_WEIGHT * unit @ unit[2]
        + (1 - similar.EMBEDDING_WEIGHT) * knn
        + similar.GENRE_WEIGHT * overlap
    )
    scores[2] = -np.inf
    best = np.argsort(-scores)[:4]
    assert [item.movie_id for item in body.items] == [oracle.movies[row]["movie_id"] for row in best]
    assert [item.score for item in body.items] == pytest.approx(scores[best].tolist(), rel=1e-4)
    assert len(client.get("/movies/3/similar").json()["items"]) == 10


def test_similar_errors(client: TestClient) -> None:
    assert_error(client.get("/movies/9999/similar"), 404, "unknown_movie", "'9999'", "40 movies")
    assert_error(client.get("/movies/3/similar", params={"k": 0}), 422, "invalid_request", "query.k")
    assert_error(client.get("/movies/3/similar", params={"k": 51}), 422, "invalid_request", "RECSYS_MAX_K")
    assert_error(client.get("/movies/3/similar", params={"k": "true"}), 422, "invalid_request", "query.k")


# --- operations ---------------------------------------------------------------------------------------------


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "version": V1}


def test_model_info_shows_version_metrics_index_and_settings(client: TestClient) -> None:
    info = client.get("/model").json()
    assert info["version"] == V1 and info["pinned"] is None
    assert (info["num_movies"], info["num_known_users"], info["embedding_dim"]) == (40, 20, 8)
    assert info["index"]["kind"] == "brute_force" and info["index"]["recall"] == 1.0
    assert info["metrics"]["model"]["B"]["top_10"] == 0.5
    assert info["settings"]["max_k"] == 50 and info["settings"]["admin_enabled"] is True
    assert "s3cret" not in str(info)


def test_metrics_count_requests_batches_and_the_served_version(client: TestClient) -> None:
    client.get("/recommend", params={"user_id": "1"})
    client.get("/movies/nope/similar")
    text = client.get("/metrics").text
    assert 'recsys_http_requests_total{method="GET",route="/recommend",status="200"}' in text
    assert 'recsys_http_requests_total{method="GET",route="/movies/{movie_id}/similar",status="404"}' in text
    assert 'recsys_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/recommend"' in text
    assert f'recsys_model_info{{version="{V1}"}} 1.0' in text
    assert "recsys_batch_size_count" in text
    assert "recsys_model_swaps_total 1.0" in text
    assert "recsys_model_load_failures_total 0.0" in text


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.put("/recommend")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"  # every route at the path, not the first one's
    assert client.options("/admin/pin").headers["allow"] == "DELETE, POST"


def test_openapi_documents_the_hand_parsed_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    get = spec["paths"]["/recommend"]["get"]
    assert {p["name"] for p in get["parameters"]} >= {"user_id", "timestamp", "k", "exclude", "genres"}
    post = spec["paths"]["/recommend"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["examples"]
    assert {"413", "422", "503"} <= set(post["responses"])
    assert client.get("/docs").status_code == 200


def test_openapi_states_the_bounds_this_server_enforces(client: TestClient) -> None:
    """max_k=50 and max_batch_requests=4 here: the schema says so wherever they apply, and no marker is left."""
    spec = client.get("/openapi.json").json()
    parameters = {p["name"]: p["schema"] for p in spec["paths"]["/recommend"]["get"]["parameters"]}
    body = spec["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch = spec["paths"]["/recommend/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    similar = {p["name"]: p["schema"] for p in spec["paths"]["/movies/{movie_id}/similar"]["get"]["parameters"]}
    for k in (parameters["k"], body["properties"]["k"], batch["properties"]["requests"]["items"]["properties"]["k"]):
        assert (k["minimum"], k["maximum"]) == (1, 50)
    assert (similar["k"]["minimum"], similar["k"]["maximum"]) == (1, 50)
    assert batch["properties"]["requests"]["maxItems"] == 4
    timestamp = parameters["timestamp"]["anyOf"]
    assert timestamp[0] == {"type": "integer", "minimum": 0, "maximum": 253_402_300_799}
    assert timestamp[1]["format"] == "date-time" and timestamp[1]["pattern"].startswith("^(19[7-9]")
    assert "-setting" not in json.dumps(spec)
