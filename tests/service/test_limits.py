"""Limits against hostile clients, on the real server: slow or silent connections, huge headers, huge bodies."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from service.limits import ReadLimits, guarded_protocol
from tests.service.conftest import assert_error, free_port, running_server, serving

TIMEOUT = 0.5  # header and body deadlines for these tests, in seconds


@pytest.fixture(scope="module")
def server(shared_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root = tmp_path_factory.mktemp("limits")
    limits = {"header_timeout_seconds": str(TIMEOUT), "body_timeout_seconds": str(TIMEOUT), "max_header_bytes": "4096"}
    with running_server(shared_models_dir, f"sqlite:///{root}/ratings.db", root / "server.log", **limits) as (_, base):
        address = urlsplit(base)
        yield str(address.hostname), int(address.port or 80)


def _read_until_closed(connection: socket.socket, seconds: float) -> bytes:
    connection.settimeout(seconds)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _error(answer: bytes) -> dict[str, str]:
    """The error of a raw answer, checked to be the one error body with its length and JSON type."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower() and f"content-length: {len(body)}".encode() in head
    error = json.loads(body)
    assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, error
    return error["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers that never finish (slowloris)
        b"POST /ratings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    ],
    ids=["silent", "headers", "body"],
)
def test_a_request_that_never_arrives_is_answered_408_and_closed(server: tuple[str, int], sent: bytes) -> None:
    with socket.create_connection(server) as connection:
        connection.sendall(sent)
        started = time.monotonic()
        answer = _read_until_closed(connection, seconds=10 * TIMEOUT)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and _error(answer)["code"] == "request_timeout"
    assert TIMEOUT * 0.8 <= waited < 8 * TIMEOUT


def test_headers_over_the_cap_are_refused_431(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 8000 + b"\r\n\r\n")
        answer = _read_until_closed(connection, seconds=5)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert _error(answer) == {
        "code": "request_header_fields_too_large",
        "message": "the URL and headers exceed 4096 bytes",
    }


def test_a_kept_alive_connection_serves_requests_and_its_next_request_gets_a_fresh_deadline(
    server: tuple[str, int],
) -> None:
    host, port = server
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(TIMEOUT * 0.6)  # idle between requests: less than the keep-alive, longer than nothing


def test_a_body_over_the_cap_is_refused_413_in_the_error_shape(shared_models_dir: Path) -> None:
    with serving(shared_models_dir, max_body_bytes=2048, admin_token="s3cret") as client:
        big = {"user_id": "1", "exclude": ["1"] * 1000}  # ~5 KB
        assert_error(client.post("/recommend", json=big), 413, "request_entity_too_large", "2048 bytes")
        batch = {"requests": [{"user_id": "1"}] * 200}
        assert_error(client.post("/recommend/batch", json=batch), 413, "request_entity_too_large")
        ratings = {"ratings": [{"user_id": "1", "movie_id": "1", "rating": 4}] * 100}
        assert_error(client.post("/ratings", json=ratings), 413, "request_entity_too_large")
        admin = {"Authorization": "Bearer s3cret"}
        assert_error(client.post("/admin/pin", content=b" " * 4096, headers=admin), 413, "request_entity_too_large")
        assert client.post("/recommend", json={"user_id": "1"}).status_code == 200


def test_the_protocol_counts_the_requests_its_server_is_answering() -> None:
    """What lets a lone /recommend skip the batcher's queue (service.batcher): one while alone, all when not."""
    protocol = guarded_protocol(ReadLimits(5.0, 5.0, 4096))
    counts: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        counts.append(protocol.requests_in_flight())
        await asyncio.sleep(0.3)  # concurrent requests overlap here
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, http=protocol, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/")).status_code == 200
            await asyncio.gather(*(client.get("/") for _ in range(3)))
        server.should_exit = True
        await serving

    assert protocol.requests_in_flight() == 0
    asyncio.run(scenario())
    assert counts[0] == 1 and max(counts[1:]) == 3


def test_a_request_over_the_concurrency_limit_is_a_503_in_the_error_shape() -> None:
    """uvicorn's limit_concurrency (RECSYS_MAX_CONNECTIONS) answers in the one error shape, not in plain text."""
    protocol = guarded_protocol(ReadLimits(5.0, 5.0, 4096))
    called: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            called.append(scope["path"])

    async def scenario() -> httpx.Response:
        port = free_port()
        # One: the request's own connection already reaches it, so every request is over the limit.
        config = uvicorn.Config(app, port=port, http=protocol, limit_concurrency=1, log_level="error", lifespan="off")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/recommend", json={"user_id": "1"})
        server.should_exit = True
        await serving
        return response

    response = asyncio.run(scenario())
    assert_error(response, 503, "service_unavailable", "RECSYS_MAX_CONNECTIONS")
    assert response.headers["connection"] == "close" and not called
