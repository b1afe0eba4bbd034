"""Record what each /recommend answer showed: a `recommendation_id` on the answer, the impression written behind it.

A request only stamps its answer and appends one tuple to a bounded queue (no lock, no wake-up, no I/O);
every RECSYS_IMPRESSION_FLUSH_SECONDS one writer thread takes what has queued and hands it, up to
RECSYS_IMPRESSION_BATCH at a time, to the writer process (service/impression_process.py), which stores it. When
the queue is full (the store is slow or down) the impression is dropped and counted, and a batch the store
refuses is dropped and counted too: no request ever waits for the impressions store or fails because of it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from contract.impressions import ImpressionStore, ImpressionStoreError
from contract.ratings import RatingsStore
from service.impression_process import Queued, WriterProcess

log = logging.getLogger(__name__)


def recommendation_ids() -> Iterator[str]:
    """Unique answer ids, 32 hex digits: the clock in nanoseconds, this process's random tag, a counter.

    Time-ordered, so the store's unique index on them grows at its right edge (random ids cost every insert a
    random page of a growing index), and cheaper per answer than uuid4 (no system call for randomness). Two
    servers collide only if they drew the same 32-bit tag and stamped the same nanosecond with the same count.
    """
    tag = os.urandom(4).hex()
    for count in itertools.count():
        yield f"{time.time_ns():016x}{tag}{count & 0xFFFFFFFF:08x}"


class ImpressionWriter:
    """Stamps answers and has their impressions stored from a bounded queue, in batches: a background thread
    hands each batch to the writer process and waits for it there, never on the event loop."""

    def __init__(
        self,
        max_queue: int,
        max_batch: int,
        flush_seconds: float,
        on_dropped: Callable[[str, int], None],
        on_written: Callable[[int], None],
        enabled: bool = True,
    ) -> None:
        """
        Args:
            max_queue: impressions waiting at most; one more is dropped (counted as `queue_full`).
            max_batch: impressions per transaction.
            flush_seconds: how often the thread writes what has queued.
            on_dropped: (reason, count) for each drop: `queue_full` or `store_error`.
            on_written: count of impressions committed.
            enabled: False stamps answers but records nothing (RECSYS_IMPRESSIONS=false).
        """
        self.enabled = enabled
        # A deque, not a queue.Queue: an append takes no lock and wakes no thread. Waking the writer on every
        # answer made it write one impression per transaction and cost the server a third of its throughput.
        self._queue: deque[Queued] = deque()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._flush_seconds = flush_seconds
        self._on_dropped = on_dropped
        self._on_written = on_written
        self._process: WriterProcess | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = False  # the store refused the last batch (logged once per outage)
        self._ids = recommendation_ids()

    def start(self, url: str) -> None:
        """Start the writer thread over the store at `url` (its schema already created: open_impressions); the
        writer process starts with the first batch."""
        if self.enabled:
            self._process = WriterProcess(url)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
            self._thread.start()

    def stop(self, seconds: float = 5.0) -> None:
        """Write what is queued (waiting at most `seconds` for a stuck store), stop the thread and the process."""
        if self._thread is None:
            return
        deadline = time.monotonic() + seconds
        self._stop.set()
        self._thread.join(seconds)  # a stuck store: the daemon thread is abandoned with the queue
        self._thread = None
        if self._process is not None:  # stuck past the deadline: killed, which also frees the thread
            self._process.close(max(deadline - time.monotonic(), 0.0))

    def stamp(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Give `answer` (a RecommendResponse dict) its recommendation_id and queue its impression; never blocks."""
        recommendation_id = next(self._ids)
        answer["recommendation_id"] = recommendation_id
        if self._thread is None:
            return answer
        if len(self._queue) >= self._max_queue:
            self._on_dropped("queue_full", 1)
            return answer
        # A plain tuple of strings, ints and a bool (the movie ids joined by spaces: numeric ids, never blank),
        # never the answer's item dicts nor an Impression: anything queued for a flush interval would survive
        # young collections into the older generations, whose passes walk every container there (the item dicts
        # cost a fifth more CPU per request at high load, Impressions a tenth at concurrency 64). The collector
        # stops watching a tuple of such values at its first pass; a tuple holding a tuple only at a later one,
        # and an Impression (a slotted dataclass) never. The writer process builds the Impressions.
        movie_ids = " ".join([item["movie_id"] for item in answer["items"]])
        self._queue.append((recommendation_id, answer["user_id"], answer["model_version"], answer["timestamp"],
                            movie_ids, answer["personalised"]))  # fmt: skip
        return answer

    def queued(self) -> int:
        return len(self._queue)

    @property
    def process_id(self) -> int | None:
        """The writer process's pid while it runs (it starts with the first batch)."""
        return None if self._process is None else self._process.pid

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self._drain()
        self._drain(everything=True)

    def _drain(self, everything: bool = False) -> None:
        """Write what had queued when the flush began, at most max_batch a transaction; with `everything` (at
        stop), until the queue is empty.

        Answers queued while a batch is written wait for the next flush. Draining until empty instead never let
        the writer rest under load: each write let a few more answers queue, written at once in a transaction of
        their own, so it wrote a stream of small transactions (about 90 a second at concurrency 8, each with its
        commit's sync): in the writer process, 91-94 µs of CPU an answer against 13.5 with one per flush.
        """
        due = len(self._queue)
        while self._queue and (everything or due > 0):
            size = self._max_batch if everything else min(self._max_batch, due)
            batch: list[Queued] = []
            with contextlib.suppress(IndexError):  # emptied: write what was taken
                while len(batch) < size:
                    batch.append(self._queue.popleft())
            due -= len(batch)
            self._write(batch)

    def _write(self, batch: list[Queued]) -> None:
        if not batch or self._process is None:
            return
        started = time.perf_counter()
        try:
            written = self._process.store(batch)
        except ImpressionStoreError as e:
            self._on_dropped("store_error", len(batch))
            if not self._failing:
                log.warning("dropping impressions while the store fails (counted in /metrics): %s", e)
            self._failing = True
            return
        except Exception:  # the thread must outlive any surprise, or impressions silently stop
            self._on_dropped("store_error", len(batch))
            log.exception("writing %d impressions failed", len(batch))
            return
        if self._failing:
            log.info("impressions are written again")
        self._failing = False
        self._on_written(written)
        log.debug("wrote %d impressions in %.1f ms", written, 1000 * (time.perf_counter() - started))


def open_impressions(ratings: RatingsStore) -> ImpressionStore:
    """The impressions tables beside the ratings, created unless present.

    Raises:
        ImpressionStoreError: they cannot be created; startup stops with the message, as for the ratings table.
    """
    store = ImpressionStore(ratings)
    store.create_schema()
    return store
