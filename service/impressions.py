"""Record what each /recommend answer showed: a `recommendation_id` on the answer, the impression written behind it.

A request only stamps its answer and puts one tuple on a bounded queue (no lock held past the put, no I/O);
one writer thread takes whatever has queued, up to a batch, and stores it in one transaction. When the queue
is full (the store is slow or down) the impression is dropped and counted, and a batch the store refuses is
dropped and counted too: no request ever waits for the impressions store or fails because of it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from contract.impressions import Impression, ImpressionStore, ImpressionStoreError
from contract.ratings import RatingsStore

log = logging.getLogger(__name__)

_STOP = object()  # the writer's last item: flush and exit


class ImpressionWriter:
    """Stamps answers and writes their impressions from a bounded queue, in batches, in a background thread."""

    def __init__(
        self,
        max_queue: int,
        max_batch: int,
        on_dropped: Callable[[str, int], None],
        on_written: Callable[[int], None],
        enabled: bool = True,
    ) -> None:
        """
        Args:
            max_queue: impressions waiting at most; one more is dropped (counted as `queue_full`).
            max_batch: impressions per transaction.
            on_dropped: (reason, count) for each drop: `queue_full` or `store_error`.
            on_written: count of impressions committed.
            enabled: False stamps answers but records nothing (RECSYS_IMPRESSIONS=false).
        """
        self.enabled = enabled
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._max_batch = max_batch
        self._on_dropped = on_dropped
        self._on_written = on_written
        self._store: ImpressionStore | None = None
        self._thread: threading.Thread | None = None
        self._failing = False  # the store refused the last batch (logged once per outage)

    def start(self, store: ImpressionStore) -> None:
        """Start the writer thread over `store` (its schema already created)."""
        self._store = store
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
            self._thread.start()

    def stop(self, seconds: float = 5.0) -> None:
        """Write what is queued (for at most `seconds`) and stop the thread."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):  # a stuck store: the daemon thread is abandoned with the queue
            self._queue.put(_STOP, timeout=seconds)
        self._thread.join(seconds)
        self._thread = None

    def stamp(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Give `answer` (a RecommendResponse dict) its recommendation_id and queue its impression; never blocks."""
        recommendation_id = uuid.uuid4().hex
        answer["recommendation_id"] = recommendation_id
        if self._thread is None:
            return answer
        impression = Impression(
            recommendation_id,
            answer["user_id"],
            answer["model_version"],
            answer["timestamp"],
            tuple(item["movie_id"] for item in answer["items"]),
            answer["personalised"],
        )
        try:
            self._queue.put_nowait(impression)
        except queue.Full:
            self._on_dropped("queue_full", 1)
        return answer

    def queued(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < self._max_batch:
                    batch.append(self._queue.get_nowait())
            stop = any(item is _STOP for item in batch)
            impressions = [item for item in batch if item is not _STOP]
            self._write(impressions)
            if stop:
                return

    def _write(self, impressions: list[Impression]) -> None:
        if not impressions or self._store is None:
            return
        started = time.perf_counter()
        try:
            self._store.add(impressions)
        except ImpressionStoreError as e:
            self._on_dropped("store_error", len(impressions))
            if not self._failing:
                log.warning("dropping impressions while the store fails (counted in /metrics): %s", e)
            self._failing = True
            return
        except Exception:  # the thread must outlive any surprise, or impressions silently stop
            self._on_dropped("store_error", len(impressions))
            log.exception("writing %d impressions failed", len(impressions))
            return
        if self._failing:
            log.info("impressions are written again")
        self._failing = False
        self._on_written(len(impressions))
        log.debug("wrote %d impressions in %.1f ms", len(impressions), 1000 * (time.perf_counter() - started))


def open_impressions(ratings: RatingsStore) -> ImpressionStore:
    """The impressions tables beside the ratings, created unless present.

    Raises:
        ImpressionStoreError: they cannot be created; startup stops with the message, as for the ratings table.
    """
    store = ImpressionStore(ratings)
    store.create_schema()
    return store
