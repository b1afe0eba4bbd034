"""The fallback ranking served at now: recent popularity over the version's ratings and every one stored since.

A user with no ratings gets the movies most rated recently (contract.popularity), not the all-time totals of
the version's data. The ranking starts from the served version's ratings (seen.npz) and the ratings stored
after its cutoff id, then adds only the ids above the last one read, by a background task every few
seconds: requests only read the latest ranking. Replicas read the same store in id order after the same
seen.npz, so they rank alike (each as of its own last refresh).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.popularity import DAY_SECONDS, DecayedPopularity
from contract.ratings import RatingColumns, RatingsStore, RatingsStoreError
from service.artifacts import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Counted:
    """One version's decayed counts as of store id `last_id`, and the ranking they give (read-only)."""

    version: ModelVersion
    counts: DecayedPopularity  # changed only under RecentPopularity._lock
    last_id: int
    ranking: np.ndarray


class RecentPopularity:
    """The served version's recent-popularity ranking: read by requests, refreshed off the request path."""

    def __init__(self, half_life_seconds: float) -> None:
        """Nothing counted yet: requests get each version's all-time ranking until the first refresh.

        Args:
            half_life_seconds: how long a rating takes to count half (math.inf: all-time counts).

        Raises:
            ValueError: a half-life under contract.popularity.MIN_HALF_LIFE_SECONDS.
        """
        DecayedPopularity(0, half_life_seconds)  # a bad half-life fails at startup, not on the first refresh
        self.half_life_seconds = half_life_seconds
        self._counted: _Counted | None = None  # replaced whole: a request reads one consistent state
        self._lock = threading.Lock()  # one refresh at a time
        self._failing = False  # the store failed the last refresh (logged once per outage)
        self._refreshed_at: float | None = None

    def ranking(self, version: ModelVersion) -> np.ndarray:
        """`version`'s movie rows, most rated recently first (read-only); one attribute read per request.

        Its all-time ranking (popularity.npy) until a refresh has counted for it: for at most one refresh
        period after a swap.
        """
        counted = self._counted
        return counted.ranking if counted is not None and counted.version is version else version.popularity

    def refresh(self, version: ModelVersion | None, store: RatingsStore) -> None:
        """Count the ratings stored since the last refresh; blocking (store reads), so run it in a worker thread.

        A version not counted yet starts from its own ratings and the store after its cutoff id. A store that
        fails keeps the last ranking (a new version's: from its own ratings) and logs; the next refresh reads on
        from the last id counted, so no rating is missed or counted twice.
        """
        if version is None:
            return
        with self._lock:
            counted = self._counted
            if counted is None or counted.version is not version:
                counts = DecayedPopularity.from_user_ratings(
                    version.ratings, version.num_movies, self.half_life_seconds
                )
                counted = _Counted(version, counts, version.manifest.data.ratings_cutoff_id, counts.ranking())
            try:
                counted = self._read_store(counted, store)
            except RatingsStoreError as e:
                if not self._failing:
                    log.warning("recent popularity keeps its last ranking (store ids <= %d): %s", counted.last_id, e)
                self._failing = True
            else:
                if self._failing:
                    log.info("recent popularity reads the ratings store again (now at id %d)", counted.last_id)
                self._failing = False
                self._refreshed_at = time.time()
            self._counted = counted

    async def watch(
        self, current: Callable[[], ModelVersion | None], store: Callable[[], RatingsStore], seconds: float
    ) -> None:
        """Refresh for the served version every `seconds`; run as a background task beside the registry's."""
        while True:
            try:
                await asyncio.to_thread(self.refresh, current(), store())
            except Exception:  # the task must outlive any surprise, or the ranking silently stops following
                log.exception("refreshing the recent popularity ranking failed")
            await asyncio.sleep(seconds)

    def describe(self) -> dict[str, Any]:
        """What the ranking counts, for an info endpoint."""
        counted = self._counted
        return {
            "half_life_days": self.half_life_seconds / DAY_SECONDS,
            "version": counted.version.name if counted else None,
            "ratings_counted": counted.counts.num_ratings if counted else 0,
            "last_stored_id": counted.last_id if counted else None,
            "refreshed_at": self._refreshed_at,
            "store_failing": self._failing,
        }

    def _count_version(self, version: ModelVersion) -> _Counted:
        """The version's own ratings (seen.npz, in file order), as of its cutoff id in the store."""
        counts = DecayedPopularity.from_user_ratings(version.ratings, version.num_movies, self.half_life_seconds)
        return _Counted(version, counts, version.manifest.data.ratings_cutoff_id, counts.ranking())

    @staticmethod
    def _read_store(counted: _Counted, store: RatingsStore) -> _Counted:
        """`counted` plus the ratings stored after its last id. Every store read comes before any change, so a
        failed read (RatingsStoreError) leaves `counted` as it was."""
        newest = store.last_id()
        if newest <= counted.last_id:
            return counted
        columns = store.ratings_up_to(newest, counted.last_id)
        rows = _catalogue_rows(counted.version, columns)
        keep = rows >= 0  # a movie the version's catalogue lacks cannot be recommended by it
        counted.counts.add(rows[keep], columns.timestamp[keep])
        return _Counted(counted.version, counted.counts, newest, counted.counts.ranking())


def _catalogue_rows(version: ModelVersion, columns: RatingColumns) -> np.ndarray:
    row_of = version.row_of_movie
    return np.fromiter((row_of.get(m, -1) for m in columns.movie_id.tolist()), dtype=np.int64, count=len(columns))
