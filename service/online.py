"""Online metrics per version: credit stored ratings to impressions, prune old ones, and serve the tallies.

A background task does the store's work every few seconds in a worker thread (contract.impressions: credit
the ratings that settled, delete impressions past retention, read the per-version tallies); requests and
scrapes only read the last tallies it read. The tallies come from the shared store, so every replica shows
the same figures (each as of its own last refresh).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.impressions import ImpressionStore, OnlineStats
from contract.popularity import DAY_SECONDS
from contract.ratings import RatingsStoreError

log = logging.getLogger(__name__)


class OnlineMetrics:
    """The last tallies read from the impressions store, refreshed off the request path."""

    def __init__(
        self, window_days: float, settle_seconds: float, retention_days: float, registry: CollectorRegistry
    ) -> None:
        self.window_seconds = round(window_days * DAY_SECONDS)
        self.settle_seconds = settle_seconds
        self.retention_seconds = retention_days * DAY_SECONDS
        self._stats: dict[str, OnlineStats] = {}  # replaced whole by each refresh
        self._refreshed_at: float | None = None
        self._failing = False
        self._lock = threading.Lock()  # one refresh at a time (the task, an admin or a test)
        self.written = Counter(
            "recsys_impressions_written", "Impressions committed to the impressions store.", registry=registry
        )
        self.dropped = Counter(
            "recsys_impressions_dropped",
            "Impressions not recorded: queue_full (the store is slow or down) or store_error (a write failed).",
            ["reason"],
            registry=registry,
        )
        self.credited = Counter(
            "recsys_ratings_credited", "Stored ratings credited to an impression by this replica.", registry=registry
        )
        registry.register(_StatsCollector(lambda: self._stats))

    def drop(self, reason: str, count: int) -> None:
        self.dropped.labels(reason).inc(count)

    def stats(self) -> dict[str, OnlineStats]:
        return self._stats

    def refresh(self, store: ImpressionStore, now: float | None = None) -> None:
        """Credit, prune, read; blocking (store work), so run it in a worker thread. A failing store keeps the
        last tallies and logs once per outage."""
        now = time.time() if now is None else now
        with self._lock:
            try:
                credits = store.credit(self.window_seconds, self.settle_seconds, now)
                store.prune(int(now - self.retention_seconds))
                self._stats = store.online_stats()
            except RatingsStoreError as e:
                if not self._failing:
                    log.warning("online metrics keep their last figures: %s", e)
                self._failing = True
                return
            self.credited.inc(len(credits))
            self._failing = False
            self._refreshed_at = now

    async def watch(self, store: Callable[[], ImpressionStore], seconds: float) -> None:
        """Refresh every `seconds`; run as a background task."""
        while True:
            try:
                await asyncio.to_thread(self.refresh, store())
            except Exception:  # the task must outlive any surprise, or the figures silently freeze
                log.exception("refreshing the online metrics failed")
            await asyncio.sleep(seconds)

    def describe(self, versions: list[str]) -> dict[str, Any]:
        """The figures of `versions` (the served ones) for /model, and what they count."""
        return {
            "window_days": self.window_seconds / DAY_SECONDS,
            "refreshed_at": self._refreshed_at,
            "store_failing": self._failing,
            "versions": {name: self._stats[name].as_dict() for name in versions if name in self._stats},
        }


class _StatsCollector(Collector):
    """The tallies as Prometheus gauges labelled by version, read from the last refresh at each scrape."""

    def __init__(self, stats: Callable[[], dict[str, OnlineStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        simple = {
            "impressions": ("Answers recorded (impressions) for the version.", lambda s: s.impressions),
            "rated_impressions": ("Impressions followed by a rating of a shown movie.", lambda s: s.rated),
            "liked_impressions": ("Impressions followed by a liked rating (>= 4) of a shown movie.", lambda s: s.liked),
            "rated_share": ("Share of impressions followed by a rating of a shown movie.", lambda s: s.rated_share),
            "liked_share": ("Share of impressions followed by a liked rating of a shown movie.", _liked_share),
            "coverage_movies": ("Distinct movies the version has shown.", lambda s: s.coverage),
        }
        for name, (text, value) in simple.items():
            family = GaugeMetricFamily(f"recsys_online_{name}", text, labels=["version"])
            for version, s in sorted(stats.items()):
                family.add_metric([version], value(s))
            yield family
        hits = GaugeMetricFamily(
            "recsys_online_hits", "Credited ratings by the rank the movie was shown at.", labels=["version", "rank"]
        )
        for version, s in sorted(stats.items()):
            for rank, count in sorted(s.hits_by_rank.items()):
                hits.add_metric([version, str(rank)], count)
        yield hits


def _liked_share(stats: OnlineStats) -> float:
    return stats.liked_share
