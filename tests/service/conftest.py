"""Service fixtures: hand-built versions (fast, exact oracles) and running apps over them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contract.manifest import TRAINING_CURVE
from service.app import create_app
from service.config import Settings
from tests.service.version_factory import Oracle, build_version, write_current, write_manifest

REPO = Path(__file__).parents[2]
V1 = "20260101T000000Z"
V2 = "20260102T000000Z"
TS = 885_000_000  # a timestamp inside the synthetic training range


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Oracle]]:
    """Two different good versions, built once; tests copy them into their own models dirs."""
    root = tmp_path_factory.mktemp("built")
    oracles = {V1: build_version(root, V1, seed=0), V2: build_version(root, V2, seed=1)}
    return root, oracles


@pytest.fixture(scope="session")
def oracles(built: tuple[Path, dict[str, Oracle]]) -> dict[str, Oracle]:
    return built[1]


@pytest.fixture
def add_version(built: tuple[Path, dict[str, Oracle]]) -> Callable[[Path, str], Path]:
    """Copy a built version into a models dir (without touching CURRENT)."""

    def add(models_dir: Path, name: str) -> Path:
        return Path(shutil.copytree(built[0] / name, models_dir / name))

    return add


@pytest.fixture
def models_dir(tmp_path: Path, add_version: Callable[[Path, str], Path]) -> Path:
    """A fresh models dir serving V1, for tests that change it."""
    models = tmp_path / "models"
    models.mkdir()
    add_version(models, V1)
    write_current(models, V1)
    return models


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory: pytest.TempPathFactory, built: tuple[Path, dict[str, Oracle]]) -> Path:
    """A models dir serving V1 that no test changes."""
    models = tmp_path_factory.mktemp("shared") / "models"
    shutil.copytree(built[0] / V1, models / V1)
    write_current(models, V1)
    return models


def training_curve_png(width: int = 320, height: int = 160) -> bytes:
    """A real grayscale PNG of a rising curve on white: what the exporter's plot stands for in hand-built versions."""
    pixels = [bytearray([255] * width) for _ in range(height)]
    for y in range(10, height - 10):
        pixels[y][10] = 0  # the y axis
    pixels[height - 11][10 : width - 10] = bytes(width - 20)  # the x axis
    for x in range(12, width - 10):
        y = height - 12 - round((height - 30) * (1 - math.exp(-(x - 12) / 60)))
        pixels[y][x] = pixels[y - 1][x] = 60

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)  # filter type 0 on every row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def add_training_curve(version_dir: Path) -> bytes:
    """Give a hand-built version the training_curve.png an exported one has (the manifest rewritten to match)."""
    png = training_curve_png()
    (version_dir / TRAINING_CURVE).write_bytes(png)
    write_manifest(version_dir)
    return png


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextlib.contextmanager
def serving(models_dir: Path, **settings: Any) -> Iterator[TestClient]:
    """A started app over models_dir, ready (a version loaded) unless the dir has none."""
    app = create_app(Settings(models_dir=models_dir, **{"poll_seconds": 0, **settings}))
    with TestClient(app) as client:
        if (models_dir / "CURRENT").exists():
            wait_until(lambda: client.get("/readyz").status_code == 200)
        yield client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server(
    models_dir: Path, ratings_url: str, log: Path, *, ready: bool = True, seconds: float = 60, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m service` on a free loopback port; yields the process and its base URL, killed on exit.

    It is yielded once /readyz is 200 (a version loaded), or with ready=False once it answers at all.
    `settings` are more RECSYS_* variables by field name (poll_seconds="0.2").
    """
    port = free_port()
    env = {
        **os.environ,
        "RECSYS_RATINGS_URL": ratings_url,
        "RECSYS_POLL_SECONDS": "0",
        "RECSYS_LOG_LEVEL": "warning",
        **{f"RECSYS_{name.upper()}": value for name, value in settings.items()},
    }
    command = [sys.executable, "-m", "service", "--models-dir", str(models_dir), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)

        def answering() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{base}/{'readyz' if ready else 'healthz'}", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(answering, seconds)
            yield process, base
        finally:
            process.kill()
            process.wait(timeout=seconds)


@contextlib.asynccontextmanager
async def serving_async(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan and an async client on the same event loop, for truly concurrent requests."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.02)
            yield client


def expected_items(
    oracle: Oracle,
    user_id: str,
    k: int,
    *,
    timestamp: int = TS,
    exclude_seen: bool = True,
    exclude: tuple[str, ...] = (),
    genres: tuple[str, ...] = (),
) -> list[tuple[str, float]]:
    """The oracle's answer to the same request (factory movie_ids are row + 1)."""
    exclude_rows = (oracle.seen_rows(user_id) if exclude_seen else set()) | {int(m) - 1 for m in exclude}
    return oracle.top_k(user_id, timestamp, k, exclude_rows, set(genres) if genres else None)


def without_ids(body: Any) -> Any:
    """An answer (or a batch of them) without its recommendation_id, which is new on every answer by design."""
    if isinstance(body, list):
        return [without_ids(b) for b in body]
    if isinstance(body, dict):
        return {key: without_ids(value) for key, value in body.items() if key != "recommendation_id"}
    return body


def served_items(body: dict[str, Any]) -> list[tuple[str, float]]:
    return [(item["movie_id"], item["score"]) for item in body["items"]]


def assert_same_ranking(body: dict[str, Any], expected: list[tuple[str, float]]) -> None:
    served = served_items(body)
    assert [m for m, _ in served] == [m for m, _ in expected]
    assert [s for _, s in served] == pytest.approx([s for _, s in expected], rel=1e-4, abs=1e-4)
    assert [item["rank"] for item in body["items"]] == list(range(1, len(served) + 1))


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> None:
    """Every error has the one body shape; its message names what is wrong."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    for fragment in fragments:
        assert fragment in body["error"]["message"], body
