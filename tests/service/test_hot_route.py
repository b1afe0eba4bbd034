"""GET /recommend is answered by service/hot_route.py ahead of FastAPI's router: it must be the same route.

A GET that carries a body goes through the full FastAPI stack, which gives an independent second answer to
compare with, for good and bad requests alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from service import recommender
from tests.service.conftest import TS, serving, without_ids


@pytest.fixture(scope="module")
def client(shared_models_dir: Path) -> Iterator[TestClient]:
    with serving(shared_models_dir) as client:
        yield client


QUERIES = [
    {"user_id": "1", "timestamp": TS, "k": 5},  # a known user in the data's time
    {"user_id": "1", "k": 3},  # at now
    {"user_id": "no-such-user"},  # popularity, not personalised
    {"user_id": "1", "k": 0},  # 422 invalid_request from the schema
    {"user_id": "1", "k": 10_000},  # 422 from the settings' maximum
    {"user_id": "1", "genres": "No-such-genre"},  # 422 not_in_catalogue
    {"k": 5},  # user_id missing
]


def _requests_counted(client: TestClient, status: int) -> float:
    text = client.get("/metrics").text
    pattern = rf'recsys_http_requests_total{{method="GET",route="/recommend",status="{status}"}} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("params", QUERIES, ids=lambda p: str(sorted(p.items())))
def test_the_hot_route_answers_as_the_fastapi_route(client: TestClient, params: dict[str, object]) -> None:
    hot = client.get("/recommend", params=params)
    # A body (ignored by the route) sends the same request through FastAPI's router instead.
    routed = client.request("GET", "/recommend", params=params, content=b"{}")
    assert hot.status_code == routed.status_code
    assert hot.headers["content-type"] == routed.headers["content-type"] == "application/json"
    hot_body, routed_body = without_ids(hot.json()), without_ids(routed.json())
    if "timestamp" in hot_body:  # "now" moves between the two requests
        assert abs(hot_body.pop("timestamp") - routed_body.pop("timestamp")) <= 2
    assert hot_body == routed_body
    assert int(hot.headers["content-length"]) == len(hot.content)


def test_hot_route_answers_are_counted_under_the_route_template(client: TestClient) -> None:
    before_ok, before_bad = _requests_counted(client, 200), _requests_counted(client, 422)
    assert client.get("/recommend", params={"user_id": "1"}).status_code == 200
    assert client.get("/recommend", params={"user_id": "1", "k": 0}).status_code == 422
    assert _requests_counted(client, 200) == before_ok + 1
    assert _requests_counted(client, 422) == before_bad + 1


def test_an_unexpected_error_is_a_500_in_the_error_shape_and_counted(client: TestClient) -> None:
    before = _requests_counted(client, 500)
    with mock.patch.object(recommender, "user_state", side_effect=RuntimeError("boom")):
        response = client.get("/recommend", params={"user_id": "1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal error; the server log has the details"}
    }
    assert _requests_counted(client, 500) == before + 1


def test_other_methods_and_paths_still_reach_fastapi(client: TestClient) -> None:
    assert client.head("/recommend", params={"user_id": "1"}).status_code == 405
    assert client.post("/recommend", json={"user_id": "1", "k": 2}).status_code == 200
    slash = client.get("/recommend/", params={"user_id": "1"}, follow_redirects=False)
    assert slash.status_code == 307 and slash.headers["location"].endswith("/recommend?user_id=1")
