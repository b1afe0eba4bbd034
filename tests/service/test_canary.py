"""The canary: stable assignment by user id, both versions served, set and cleared by admin, followed by replicas."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contract.pointers import CANARY, read_pointer
from service.canary import canary_bucket
from tests.service.conftest import TS, V1, V2, assert_error, serving, wait_until

ADMIN = {"Authorization": "Bearer s3cret"}
USERS = [str(u) for u in range(1, 41)] + ["stranger"]


def arms(client: TestClient, users: list[str] = USERS) -> dict[str, str]:
    """The version that answers each user (GET at the data's moment)."""
    return {
        u: client.get("/recommend", params={"user_id": u, "k": 3, "timestamp": TS}).json()["model_version"]
        for u in users
    }


def expected(share: float, users: list[str] = USERS) -> dict[str, str]:
    return {u: V2 if canary_bucket(u) < share else V1 for u in users}


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5, 0.9])
def test_the_share_is_within_two_points_over_10000_ids(share: float) -> None:
    in_canary = sum(canary_bucket(str(u)) < share for u in range(1, 10_001))
    assert abs(in_canary / 10_000 - share) <= 0.02


def test_assignment_is_stable_and_raising_the_share_only_adds_users() -> None:
    ids = [str(u) for u in range(1, 2001)]
    assert [canary_bucket(u) for u in ids] == [canary_bucket(u) for u in ids]
    small, large = ({u for u in ids if canary_bucket(u) < s} for s in (0.1, 0.3))
    assert small < large and 0 < len(small) < len(large) < len(ids)


@pytest.fixture
def two_versions(models_dir: Path, add_version: Callable[[Path, str], Path]) -> Path:
    add_version(models_dir, V2)
    return models_dir


def test_a_canary_on_two_replicas_serves_the_same_users_and_is_withdrawn_on_both(two_versions: Path) -> None:
    settings = {"admin_token": "s3cret", "poll_seconds": 0.1, "canary_share": 0.5}
    with serving(two_versions, **settings) as first, serving(two_versions, **settings) as second:
        assert set(arms(first).values()) == {V1}
        state = first.post("/admin/canary", json={"version": V2}, headers=ADMIN)
        assert state.status_code == 200, state.text
        assert state.json() == {"version": V1, "canary": V2, "share": 0.5}
        assert read_pointer(two_versions, CANARY) == V2
        wait_until(lambda: second.get("/model").json()["canary"]["version"] == V2)
        want = expected(0.5)
        assert V1 in want.values() and V2 in want.values()
        assert arms(first) == want and arms(second) == want and arms(second) == want  # same user, same arm, always

        batch = second.post(
            "/recommend/batch", json={"requests": [{"user_id": u, "k": 2, "timestamp": TS} for u in USERS[:10]]}
        ).json()["results"]
        assert [r["model_version"] for r in batch] == [want[u] for u in USERS[:10]]
        model = first.get("/model").json()
        assert model["version"] == V1 and model["canary"] == {"version": V2, "share": 0.5, "pointer": CANARY}
        assert f'recsys_canary_info{{version="{V2}"}} 1.0' in first.get("/metrics").text

        cleared = second.delete("/admin/canary", headers=ADMIN)
        assert cleared.json() == {"version": V1, "canary": None, "share": 0.5}
        assert read_pointer(two_versions, CANARY) is None
        assert set(arms(second).values()) == {V1}
        wait_until(lambda: first.get("/model").json()["canary"]["version"] is None)
        assert set(arms(first).values()) == {V1}
        assert "recsys_canary_info{" not in first.get("/metrics").text


def test_a_promoted_canary_is_no_longer_a_canary(two_versions: Path) -> None:
    with serving(two_versions, admin_token="s3cret", canary_share=1.0) as client:
        assert client.post("/admin/canary", json={"version": V2}, headers=ADMIN).status_code == 200
        assert set(arms(client).values()) == {V2}  # share 1: everyone
        assert client.post("/admin/pin", json={"version": V2}, headers=ADMIN).status_code == 200
        client.post("/admin/reload", headers=ADMIN)
        (two_versions / "CURRENT").write_text(V2 + "\n")
        wait_until(lambda: client.get("/model").json()["version"] == V2)
        assert set(arms(client).values()) == {V2}


def test_admin_canary_errors(two_versions: Path) -> None:
    with serving(two_versions, admin_token="s3cret") as client:
        assert_error(client.post("/admin/canary", json={"version": "nope"}, headers=ADMIN), 404, "version_not_found")
        assert_error(client.post("/admin/canary", json={"version": V2}), 401, "unauthorized")
        assert_error(client.post("/admin/canary", json={"versions": V2}, headers=ADMIN), 422, "invalid_request")
        assert read_pointer(two_versions, CANARY) is None
        assert client.delete("/admin/canary", headers=ADMIN).json()["canary"] is None  # nothing to clear: fine


def test_a_canary_pointer_present_at_startup_is_served(two_versions: Path) -> None:
    (two_versions / CANARY).write_text(V2 + "\n")
    with serving(two_versions, canary_share=0.5) as client:
        wait_until(lambda: client.get("/model").json()["canary"]["version"] == V2)
        assert arms(client) == expected(0.5)
