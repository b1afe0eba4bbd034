"""Dynamic batching: concurrent requests share one query_model call and one ScaNN search.

A TensorFlow call costs about the same for 1 or 256 queries, so whenever the model is free the worker takes
everything queued (up to max_batch) at once. There is no waiting window: a lone request is computed as soon
as it arrives, and batches grow only when requests pile up while the model is busy.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Searchable(Protocol):
    """What the batcher needs from a version (artifacts.ModelVersion in production)."""

    name: str

    def embed(self, user_ids: list[str], timestamps: list[int], histories: list[list[str]]) -> np.ndarray: ...

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Neighbours:
    """One request's share of a batch: its query embedding and its search hits, best first."""

    query: np.ndarray  # float32 [d]
    rows: np.ndarray  # int64 [depth], movie rows
    scores: np.ndarray  # float32 [depth]; NaN where ScaNN had fewer hits than asked


@dataclass(eq=False)
class _Pending:
    version: Searchable
    user_id: str
    timestamp: int
    history: list[str]  # movie ids, newest first
    depth: int
    future: asyncio.Future[Neighbours] = field(repr=False)


def _search_by_depth(version: Searchable, queries: np.ndarray, group: list[_Pending]) -> list[Neighbours]:
    """Search once per depth rounded up to a power of two, so one deep request (a user with 600 seen
    movies) does not make the whole batch search deep: on 1,682 movies, depth 600 for 64 queries cost
    2.1 ms against 0.35 ms at depth 20."""
    by_depth: dict[int, list[int]] = {}
    for i, pending in enumerate(group):
        by_depth.setdefault(1 << (pending.depth - 1).bit_length(), []).append(i)
    found: dict[int, Neighbours] = {}
    for depth, members in by_depth.items():
        rows, scores = version.search(queries[members], depth)
        found.update((i, Neighbours(queries[i], rows[j], scores[j])) for j, i in enumerate(members))
    return [found[i] for i in range(len(group))]


def _compute(batch: list[_Pending]) -> list[Neighbours | BaseException]:
    """Answer a batch: one model call per version in it (two only during a hot swap), few searches."""
    results: dict[int, Neighbours | BaseException] = {}
    by_version: dict[Searchable, list[_Pending]] = {}
    for pending in batch:
        by_version.setdefault(pending.version, []).append(pending)
    for version, group in by_version.items():
        try:
            queries = version.embed(
                [p.user_id for p in group], [p.timestamp for p in group], [p.history for p in group]
            )
            found = _search_by_depth(version, queries, group)
        except Exception as e:  # every caller of the failed group hears about it; the batcher lives on
            log.exception("batch of %d failed on version %s", len(group), version.name)
            results.update((id(p), e) for p in group)
            continue
        results.update((id(p), hits) for p, hits in zip(group, found, strict=True))
    return [results[id(p)] for p in batch]


class Batcher:
    """Queue of pending searches drained by one worker task; start() and stop() bracket its life."""

    def __init__(self, max_batch: int, in_thread: bool, observe: Callable[[int], None]) -> None:
        self._max_batch = max_batch
        self._in_thread = in_thread
        self._observe = observe  # told each batch's size (a Prometheus histogram)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Stop the worker; anything still queued is cancelled rather than left waiting forever."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()

    async def search(
        self, version: Searchable, user_id: str, timestamp: int, history: list[str], depth: int
    ) -> Neighbours:
        """Queue one query (its history: movie ids, newest first) and wait for the batch it lands in."""
        if self._worker is None:
            raise RuntimeError("Batcher.start() was not called")
        future: asyncio.Future[Neighbours] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(version, user_id, timestamp, history, depth, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # One turn of the event loop lets handlers woken in the same turn enqueue too (no timer: a lone
            # request waits microseconds). Measured at concurrency 8: 3.4 -> 7.4 requests per batch.
            await asyncio.sleep(0)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._observe(len(batch))
            # On the event loop by default: on 2 cores a worker thread cost 8-17% more server CPU per request
            # and batched worse (4.6 vs 7.9 per call at concurrency 8); the prototype measured it 4-5x slower.
            # RECSYS_BATCH_IN_THREAD keeps the choice measurable (benchmarks/load_recommend.py --compare-thread).
            if self._in_thread:
                results = await asyncio.to_thread(_compute, batch)
            else:
                results = _compute(batch)
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():  # the caller went away (client disconnect)
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
