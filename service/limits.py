"""The limits a deployment sets, in the app itself: header size and read timeouts, body size.

uvicorn's httptools protocol waits forever for a request's headers and body, and takes headers of any size:
thousands of connections that never finish their headers exhaust the file limit. `guarded_protocol` adds
a deadline for the headers (from the connection's first byte, or from the first byte of the next request on
a kept-alive connection) and for the body, and a cap on header bytes, and answers a request over uvicorn's
concurrency limit in the one error shape rather than uvicorn's plain text; `BodyLimit` refuses a body over
its cap with a 413 in the one error shape, before any of it is parsed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import ClassVar

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_json, http_code


@dataclass(frozen=True)
class ReadLimits:
    """How long a client may take to send a request, and how large its headers may be."""

    header_seconds: float
    body_seconds: float
    max_header_bytes: int


def _raw_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error answer, written before the app sees the request; the connection closes after it."""
    body = error_json(http_code(status), message)
    head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body


_OVERLOADED = error_json(
    http_code(503), "more connections or requests at once than RECSYS_MAX_CONNECTIONS allows: retry shortly"
)


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """What uvicorn answers a request over its limit_concurrency (a 503, closing), in the one error shape."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_OVERLOADED)).encode())]
    await send({"type": "http.response.start", "status": 503, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": _OVERLOADED})


class _Deadlines:
    """Every open connection's read deadline, checked by one periodic sweep rather than a timer each.

    A timer per deadline meant two armed and two cancelled per request (headers, then body), a measurable
    share of /recommend's throughput (docs/serving-speed.md); a deadline is now a float stored on the
    connection. The price is
    precision: a slow request is refused between its deadline and one sweep interval after it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.open: set[_GuardedHttpTools] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None

    def add(self, connection: _GuardedHttpTools) -> None:
        self.open.add(connection)
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self.interval, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in [c for c in self.open if c.deadline is not None and c.deadline <= now]:
            connection.too_slow()
        self._sweep_handle = self.loop.call_later(self.interval, self._sweep) if self.open else None


class _GuardedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol with read deadlines, a header cap and a JSON 503; `limits` is set by `guarded_protocol`."""

    limits: ClassVar[ReadLimits]
    _deadlines: ClassVar[_Deadlines | None] = None
    _server_tasks: ClassVar[set[asyncio.Task[None]] | None] = None

    @classmethod
    def requests_in_flight(cls) -> int:
        """Requests the server has read and not yet answered, 0 before the first connection.

        uvicorn keeps one task per request in its server state from the moment the request's headers are
        read, before the task first runs: the count includes requests that have not reached the app yet, so
        the batcher can tell when no other request could join a batch (service.batcher.Batcher).
        """
        tasks = cls._server_tasks
        return 0 if tasks is None else len(tasks)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        type(self)._server_tasks = self.server_state.tasks
        self._header_bytes = 0
        self._refused = False
        self.deadline: float | None = None  # loop.time() by which the awaited part must have arrived
        self._awaiting = "headers"
        deadlines = type(self)._deadlines
        if deadlines is None or deadlines.loop is not self.loop:  # one sweep per server (a test may run several)
            interval = min(self.limits.header_seconds, self.limits.body_seconds, 4.0) / 4
            deadlines = type(self)._deadlines = _Deadlines(self.loop, interval)
        deadlines.add(self)
        self._deadlines_of_server = deadlines
        self._arm(self.limits.header_seconds, "headers")
        # Checked here, not by uvicorn, whose answer over the limit is text/plain: see on_headers_complete.
        self._max_concurrency, self.limit_concurrency = self.limit_concurrency, None

    def _arm(self, seconds: float, what: str) -> None:
        self.deadline = self.loop.time() + seconds
        self._awaiting = what

    def _disarm(self) -> None:
        self.deadline = None

    def too_slow(self) -> None:
        what = self._awaiting
        seconds = self.limits.header_seconds if what == "headers" else self.limits.body_seconds
        self._refuse(408, f"the request {what} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer (unless the app already is) and close: the parser must not hand this request on."""
        self._refused = True
        self._disarm()
        if not self.transport.is_closing():
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_raw_response(status, message))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._deadlines_of_server.open.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm(self.limits.header_seconds, "headers")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._refused:
            super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes and not self._refused:
            cap = self.limits.max_header_bytes
            self._refuse(431, f"the URL and headers exceed {cap} bytes")

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._arm(self.limits.body_seconds, "body")
        cap = self._max_concurrency
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):  # uvicorn's own test
            self.logger.warning("Exceeded concurrency limit.")
            app, self.app = self.app, _overloaded  # uvicorn then queues or runs it as it would its own answer
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()


def guarded_protocol(limits: ReadLimits) -> type[_GuardedHttpTools]:
    """An httptools protocol class for `uvicorn.run(http=...)` that enforces `limits`."""
    return type("GuardedHttpTools", (_GuardedHttpTools,), {"limits": limits})


class BodyLimit:
    """Refuses a request body over `max_bytes` (413) by its Content-Length, or while it streams in.

    The refusal is an HTTPException raised where the route reads the body, so FastAPI passes it on and the
    app's one error handler answers it (other exceptions there would become a 400 about parsing).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        refuse_now = declared.isdigit() and int(declared) > self.max_bytes
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = {"type": "http.request", "body": b""} if refuse_now else await receive()
            seen += len(message.get("body", b""))
            if refuse_now or seen > self.max_bytes:
                raise HTTPException(
                    413, f"the request body is over {self.max_bytes} bytes (RECSYS_MAX_BODY_BYTES): send less"
                )
            return message

        await self.app(scope, counted, send)
