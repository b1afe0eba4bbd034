"""GET /recommend answered in plain ASGI, ahead of FastAPI itself: nearly all the traffic.

Why: profiled under load on 2 cores, Starlette's routing, FastAPI's request/response plumbing and the
exception, metrics and response wrappers took about half of a /recommend's CPU, more than a whole bare
endpoint, and FastAPI's own entry then still asked OpenTelemetry whether tracing is configured on every
request (docs/serving-speed.md). So service.app.ServiceApp hands these requests to `HotRoute.answer` before
FastAPI sees them. It counts and times the request itself as route /recommend and calls the same handler
the FastAPI route calls, which parses, answers and maps errors exactly as the route does; requests it does
not take (other paths and methods, or a GET that carries a body) go to FastAPI. The route stays declared in
FastAPI for the OpenAPI schema and for those requests.
"""

import time
from collections.abc import Awaitable, Callable

from starlette.datastructures import QueryParams
from starlette.types import Scope, Send

from service.metrics import Metrics

# A handler returns the status and the encoded JSON body, or raises nothing: errors are answers too.
Handler = Callable[[QueryParams], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]
_JSON = (b"content-type", b"application/json")


class HotRoute:
    """Answers `GET path` (without a body) with `handler`; `takes` says which requests those are."""

    def __init__(self, path: str, handler: Handler, metrics: Metrics) -> None:
        self.path = path
        self.handler = handler
        self.metrics = metrics

    def takes(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "GET" and not _has_body(scope)
        )

    async def answer(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        status, body, headers = await self.handler(QueryParams(scope["query_string"]))
        start = [_JSON, (b"content-length", str(len(body)).encode()), *headers]
        await send({"type": "http.response.start", "status": status, "headers": start})
        await send({"type": "http.response.body", "body": body})
        self.metrics.record(self.path, "GET", status, time.perf_counter() - started)


def _has_body(scope: Scope) -> bool:
    """A GET with a body is left to the full stack, whose body limit and error handling apply to it."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False
