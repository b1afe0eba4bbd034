"""Hot swap and rollback: new versions are verified before they serve, bad ones are refused, none lose requests."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.service.conftest import (
    TS,
    V1,
    V2,
    assert_error,
    assert_same_ranking,
    expected_items,
    serving,
    serving_async,
    wait_until,
    without_ids,
)
from tests.service.version_factory import Oracle, build_version, write_current, write_manifest

AddVersion = Callable[[Path, str], Path]
AUTH = {"Authorization": "Bearer s3cret"}


def _served(client: TestClient) -> str:
    return str(client.get("/readyz").json()["version"])


def _failures(client: TestClient) -> float:
    text = client.get("/metrics").text
    line = next(line for line in text.splitlines() if line.startswith("recsys_model_load_failures_total"))
    return float(line.split()[1])


def test_a_restarted_server_answers_exactly_as_before(models_dir: Path) -> None:
    requests = [{"user_id": u, "timestamp": TS, "k": 8} for u in ("1", "5", "20", "stranger")]
    with serving(models_dir) as first:
        before = [first.post("/recommend", json=r).json() for r in requests]
    with serving(models_dir) as second:
        after = [second.post("/recommend", json=r).json() for r in requests]
    assert without_ids(after) == without_ids(before)


def test_polling_picks_up_a_new_current(models_dir: Path, add_version: AddVersion) -> None:
    with serving(models_dir, poll_seconds=0.05) as client:
        assert _served(client) == V1
        add_version(models_dir, V2)
        write_current(models_dir, V2)
        wait_until(lambda: _served(client) == V2)
        text = client.get("/metrics").text
        served = [line for line in text.splitlines() if line.startswith("recsys_model_info{")]
        assert served == [f'recsys_model_info{{version="{V2}"}} 1.0']
        assert "recsys_model_swaps_total 2.0" in text


def test_server_starts_without_a_version_and_serves_once_one_appears(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with serving(models, poll_seconds=0.05) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/readyz", "/recommend?user_id=1", "/model", "/movies/1/similar"):
            assert_error(client.get(path), 503, "no_model", "CURRENT")
        build_version(models, V1)  # writes CURRENT last, like the exporter
        wait_until(lambda: client.get("/readyz").status_code == 200)
        assert client.get("/recommend", params={"user_id": "1"}).json()["model_version"] == V1


def _corrupt_a_file(version: Path) -> None:
    path = version / "movies.json"
    path.write_text(path.read_text().replace("Movie 1 ", "Movie X ", 1))


def _drop_the_manifest(version: Path) -> None:
    (version / "manifest.json").unlink()


def _add_an_extra_file(version: Path) -> None:
    (version / "scann" / "stray.bin").write_bytes(b"\0")


def _remove_a_file(version: Path) -> None:
    (version / "popularity.npy").unlink()


def _break_loading_behind_a_valid_manifest(version: Path) -> None:
    np.save(version / "popularity.npy", np.zeros(40, dtype=np.int32))  # not a ranking of the movies
    write_manifest(version)


def _truncate_the_saved_model(version: Path) -> None:
    path = version / "query_model" / "saved_model.pb"
    path.write_bytes(path.read_bytes()[:100])
    write_manifest(version)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_a_file, "sha256 differs: movies.json"),
        (_drop_the_manifest, "no manifest.json"),
        (_add_an_extra_file, "not in manifest: scann/stray.bin"),
        (_remove_a_file, "missing: popularity.npy"),
        (_break_loading_behind_a_valid_manifest, "not a permutation"),
        (_truncate_the_saved_model, "failed to load"),
    ],
)
def test_a_bad_version_is_refused_and_the_old_one_keeps_serving(
    models_dir: Path,
    add_version: AddVersion,
    oracles: dict[str, Oracle],
    damage: Callable[[Path], None],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serving(models_dir, admin_token="s3cret") as client:
        damage(add_version(models_dir, V2))
        write_current(models_dir, V2)
        assert_error(client.post("/admin/reload", headers=AUTH), 422, "version_rejected", V2, reason)
        assert _served(client) == V1 and _failures(client) == 1
        assert reason in caplog.text  # logged as well
        body = client.get("/recommend", params={"user_id": "1", "timestamp": TS, "k": 5}).json()
        assert body["model_version"] == V1
        assert_same_ranking(body, expected_items(oracles[V1], "1", 5))


def test_polling_refuses_once_then_retries_when_the_manifest_changes(models_dir: Path, add_version: AddVersion) -> None:
    with serving(models_dir, poll_seconds=0.05) as client:
        version = add_version(models_dir, V2)
        manifest = (version / "manifest.json").read_text()
        _drop_the_manifest(version)  # a version still being written
        write_current(models_dir, V2)
        wait_until(lambda: _failures(client) == 1)
        time.sleep(0.3)  # several polls: the unchanged refused version is not retried
        assert _failures(client) == 1 and _served(client) == V1
        (version / "manifest.json").write_text(manifest)  # the exporter finishes
        wait_until(lambda: _served(client) == V2)


def test_current_naming_a_missing_or_odd_directory_is_refused(models_dir: Path) -> None:
    with serving(models_dir, admin_token="s3cret") as client:
        write_current(models_dir, "20990101T000000Z")
        assert_error(client.post("/admin/reload", headers=AUTH), 404, "version_not_found", "20990101T000000Z")
        write_current(models_dir, "../elsewhere")
        assert_error(client.post("/admin/reload", headers=AUTH), 404, "version_not_found", "not a version name")
        assert _served(client) == V1 and _failures(client) == 2


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda path: path.write_bytes(b"\xff\xfe2026\n"), "not UTF-8"),
        (lambda path: (path.unlink(), path.mkdir()), "cannot be read"),
        (lambda path: path.write_text("  \n"), "is empty"),
    ],
)
def test_an_unreadable_current_is_logged_and_counted_once_and_the_served_version_stays(
    models_dir: Path, spoil: Callable[[Path], object], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(models_dir, admin_token="s3cret", poll_seconds=0.02) as client:
        spoil(models_dir / "CURRENT")
        wait_until(lambda: _failures(client) == 1)
        time.sleep(0.2)  # several polls: the same problem is not counted or logged again
        assert _failures(client) == 1 and _served(client) == V1
        assert_error(client.post("/admin/reload", headers=AUTH), 404, "version_not_found", reason)
    assert len([r for r in caplog.records if "ignoring CURRENT" in r.getMessage()]) == 1


def test_pin_is_the_rollback_and_unpin_follows_current_again(models_dir: Path, add_version: AddVersion) -> None:
    add_version(models_dir, V2)
    write_current(models_dir, V2)
    with serving(models_dir, admin_token="s3cret", poll_seconds=0.05) as client:
        assert _served(client) == V2
        response = client.post("/admin/pin", json={"version": V1}, headers=AUTH)
        assert response.json() == {"version": V1, "pinned": V1}
        time.sleep(0.3)  # polls do not undo a pin
        assert _served(client) == V1 and client.get("/model").json()["pinned"] == V1
        assert client.delete("/admin/pin", headers=AUTH).json() == {"version": V2, "pinned": None}
        assert _served(client) == V2


def test_pinning_a_bad_or_missing_version_changes_nothing(models_dir: Path, add_version: AddVersion) -> None:
    _corrupt_a_file(add_version(models_dir, V2))
    with serving(models_dir, admin_token="s3cret") as client:
        assert_error(client.post("/admin/pin", json={"version": V2}, headers=AUTH), 422, "version_rejected")
        assert_error(client.post("/admin/pin", json={"version": "nope"}, headers=AUTH), 404, "version_not_found")
        assert_error(client.post("/admin/pin", json={}, headers=AUTH), 422, "invalid_request", "body.version")
        assert client.get("/model").json()["pinned"] is None and _served(client) == V1


def test_admin_needs_the_token(models_dir: Path, shared_models_dir: Path) -> None:
    with serving(models_dir, admin_token="s3cret") as client:
        response = client.post("/admin/reload")
        assert_error(response, 401, "unauthorized", "Authorization: Bearer")
        assert response.headers["www-authenticate"] == "Bearer"
        assert_error(client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert_error(client.post("/admin/reload", headers={"Authorization": "Basic czNjcmV0"}), 401, "unauthorized")
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
    with serving(shared_models_dir) as client:
        # Without a token: 401 like any server (it says admin is off); with one: 403, as no token would help.
        response = client.delete("/admin/pin")
        assert_error(response, 401, "unauthorized", "Authorization: Bearer", "disabled")
        assert response.headers["www-authenticate"] == "Bearer"
        assert_error(client.post("/admin/reload", headers=AUTH), 403, "admin_disabled", "RECSYS_ADMIN_TOKEN")


def test_a_swap_under_concurrent_requests_loses_none(
    models_dir: Path, add_version: AddVersion, oracles: dict[str, Oracle]
) -> None:
    """Requests keep flowing while V2 loads and swaps in; each answer is right for the version it names."""

    async def scenario() -> list[httpx.Response]:
        app = create_app(Settings(models_dir=models_dir, poll_seconds=0))
        async with serving_async(app) as client:

            async def ask(i: int) -> httpx.Response:
                user = str(i % 20 + 1)
                return await client.get("/recommend", params={"user_id": user, "timestamp": TS, "k": 5})

            add_version(models_dir, V2)
            write_current(models_dir, V2)
            swap = asyncio.create_task(app.state.service.registry.sync())
            responses: list[httpx.Response] = []
            i = 0
            while not swap.done() or i < 400:  # before, during and after the swap
                wave = [asyncio.create_task(ask(i + j)) for j in range(20)]
                responses += await asyncio.gather(*wave)
                i += 20
            await swap
            return responses

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * len(responses)
    versions = [r.json()["model_version"] for r in responses]
    assert versions[0] == V1 and versions[-1] == V2
    assert versions == sorted(versions)  # once swapped, never back
    for response in responses[::7]:
        body = response.json()
        assert_same_ranking(body, expected_items(oracles[body["model_version"]], body["user_id"], 5))


def test_version_directory_can_be_renamed(models_dir: Path) -> None:
    """Asset paths are relative: a copied version under another name loads and answers the same."""
    shutil.copytree(models_dir / V1, models_dir / "20260103T000000Z")
    write_current(models_dir, "20260103T000000Z")
    with serving(models_dir) as client:
        body = client.get("/recommend", params={"user_id": "1", "timestamp": TS}).json()
        assert body["model_version"] == "20260103T000000Z"
    manifest = json.loads((models_dir / V1 / "manifest.json").read_text())
    assert manifest["version"] == V1
