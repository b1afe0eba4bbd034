"""Prometheus metrics of one app and the ASGI middleware that times every HTTP request."""

import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """One registry per app, so that several apps (tests) never share counters."""

    def __init__(self) -> None:
        disable_created_metrics()  # process-wide: the *_created series only double the exposition
        self.registry = CollectorRegistry()
        labels = ["route", "method", "status"]
        self.requests = Counter("recsys_http_requests", "HTTP requests answered.", labels, registry=self.registry)
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time from request start to the last response byte handed to the server.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "recsys_batch_size",
            "Requests answered by one query_model call and one search.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "recsys_model_info", "1 for the version being served.", ["version"], registry=self.registry
        )
        self.swaps = Counter(
            "recsys_model_swaps", "Versions swapped in (the first load included).", registry=self.registry
        )
        self.load_failures = Counter(
            "recsys_model_load_failures",
            "Versions refused because they failed to verify, load or warm up.",
            registry=self.registry,
        )
        self.ratings_stored = Counter(
            "recsys_ratings_stored", "Ratings committed to the ratings store by POST /ratings.", registry=self.registry
        )
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answered request; the labelled children are cached (labels() locks each call)."""
        labels = (route, method, str(status))
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = (self.requests.labels(*labels), self.latency.labels(*labels))
        series[0].inc()
        series[1].observe(seconds)

    def served(self, old: str | None, new: str) -> None:
        """Move the served-version gauge from the old version to the new one."""
        if old is not None and old != new:
            self.model_info.remove(old)
        self.model_info.labels(new).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times each HTTP request by route template, method and status (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # stays 500 if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route: Any = scope.get("route")
            # The template, not the path: /movies/{movie_id}/similar stays one series whatever the id.
            self.metrics.record(
                getattr(route, "path", "unmatched"), scope["method"], status, time.perf_counter() - started
            )
