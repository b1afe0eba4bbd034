"""A client that hangs up mid-body is no server error: not in the logs as one, not in the metrics as a 500."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.config import Settings
from tests.service.conftest import serving_async


def test_a_client_hanging_up_mid_body_is_counted_as_499_without_a_traceback(
    shared_models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(models_dir=shared_models_dir, poll_seconds=0))
    sent: list[dict[str, Any]] = []

    async def scenario() -> str:
        async with serving_async(app) as client:
            chunks = [
                {"type": "http.request", "body": b'{"user_id": "1", "k"', "more_body": True},
                {"type": "http.disconnect"},
            ]

            async def receive() -> dict[str, Any]:
                return chunks.pop(0) if chunks else {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/recommend", "raw_path": b"/recommend", "query_string": b"",
                     "root_path": "", "headers": [(b"content-type", b"application/json")],
                     "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
            with caplog.at_level(logging.INFO):
                await app(scope, receive, send)
            return (await client.get("/metrics")).text

    exposition = asyncio.run(scenario())
    assert sent[0]["status"] == 499
    assert 'route="/recommend",status="499"' in exposition.replace('method="POST",', "")
    assert 'status="500"' not in exposition
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "client disconnected during POST /recommend" in caplog.text
