"""Dynamic batching: concurrent requests share one query_model call and one ScaNN search.

A query-tower call and a search cost far less per query in a batch (docs/serving-speed.md), so each drain
takes everything pending (up to max_batch) at once. There is no waiting
window: a lone request is computed on the next turn of the event loop, and batches grow only from requests
that arrive together or while a batch is being computed.
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

    def embed(
        self,
        user_ids: list[str],
        timestamps: list[int],
        histories: list[list[str]],
        ratings: list[list[float]] | None = None,
    ) -> np.ndarray: ...

    def served_queries(self, queries: np.ndarray, rating_parts: list[np.ndarray | None]) -> np.ndarray: ...

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Neighbours:
    """One request's share of a batch: its query embedding and its search hits, best first."""

    query: np.ndarray  # float32 [d (+ rating width)], the served query (artifacts.ModelVersion.served_queries)
    rows: np.ndarray  # int64 [depth], movie rows
    scores: np.ndarray  # float32 [depth]; NaN where ScaNN had fewer hits than asked


_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_SCORES = np.zeros(0, dtype=np.float32)


@dataclass(eq=False)
class _Pending:
    version: Searchable
    user_id: str
    timestamp: int
    history: list[str]  # movie ids, newest first
    ratings: list[float]  # their stars, NO_VALUE where unknown
    depth: int
    rating_part: np.ndarray | None  # the user's part of the rating term (None: the version has none)
    future: asyncio.Future[Neighbours] = field(repr=False)
    query: np.ndarray | None = None  # the served query when the caller has it already (nothing to embed)


def _search_by_depth(version: Searchable, queries: np.ndarray, group: list[_Pending]) -> list[Neighbours]:
    """Search once per depth rounded up to a power of two, so one deep request (a user with hundreds of seen
    movies) does not make the whole batch search deep, several times slower than a shallow one."""
    by_depth: dict[int, list[int]] = {}
    found: dict[int, Neighbours] = {}
    for i, pending in enumerate(group):
        if pending.depth == 0:  # the caller scores its few allowed movies itself: the query is all it needs
            found[i] = Neighbours(queries[i], _NO_ROWS, _NO_SCORES)
            continue
        by_depth.setdefault(1 << (pending.depth - 1).bit_length(), []).append(i)
    for depth, members in by_depth.items():
        rows, scores = version.search(queries[members], depth)
        found.update((i, Neighbours(queries[i], rows[j], scores[j])) for j, i in enumerate(members))
    return [found[i] for i in range(len(group))]


def _served_queries(version: Searchable, group: list[_Pending]) -> np.ndarray:
    """float32 [len(group), D]: each pending's served query, given or computed (one tower call for the rest)."""
    given = {i: p.query for i, p in enumerate(group) if p.query is not None}
    todo = [p for p in group if p.query is None]
    if not todo:
        return np.stack(list(given.values()))
    embedded = version.embed(
        [p.user_id for p in todo], [p.timestamp for p in todo], [p.history for p in todo], [p.ratings for p in todo]
    )
    computed = version.served_queries(embedded, [p.rating_part for p in todo])
    if not given:
        return computed
    queries = np.empty((len(group), computed.shape[1]), dtype=np.float32)
    queries[list(given)] = np.stack(list(given.values()))
    queries[[i for i in range(len(group)) if i not in given]] = computed
    return queries


def _compute(batch: list[_Pending]) -> list[Neighbours | BaseException]:
    """Answer a batch: one model call per version in it (two only during a hot swap), few searches."""
    results: dict[int, Neighbours | BaseException] = {}
    by_version: dict[Searchable, list[_Pending]] = {}
    for pending in batch:
        by_version.setdefault(pending.version, []).append(pending)
    for version, group in by_version.items():
        try:
            found = _search_by_depth(version, _served_queries(version, group), group)
        except Exception as e:  # every caller of the failed group hears about it; the batcher lives on
            log.exception("batch of %d failed on version %s", len(group), version.name)
            results.update((id(p), e) for p in group)
            continue
        results.update((id(p), hits) for p, hits in zip(group, found, strict=True))
    return [results[id(p)] for p in batch]


class Batcher:
    """Pending searches, drained by a callback scheduled on the event loop; start() and stop() bracket its life.

    A callback rather than a worker task: the first request of an idle moment schedules one drain with
    call_soon, and requests that run before it join its batch. A worker task woken through an asyncio.Queue
    cost two more turns of the loop per batch. When the server says how many requests it is answering
    (`requests_in_flight`) and the caller is the only one, nothing could join a batch: it is computed at once,
    without the drain's turn and the wake-up's (what each bought at concurrency 1: docs/serving-speed.md).
    """

    def __init__(
        self,
        max_batch: int,
        in_thread: bool,
        observe: Callable[[int], None],
        requests_in_flight: Callable[[], int] | None = None,
    ) -> None:
        """`requests_in_flight`: the server's count of requests read and not yet answered, where it can tell."""
        self._max_batch = max_batch
        self._in_thread = in_thread
        self._observe = observe  # told each batch's size (a Prometheus histogram)
        self._requests_in_flight = requests_in_flight
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False  # a drain is on the loop's ready queue
        self._computing: asyncio.Task[None] | None = None  # in-thread mode: the batch being computed

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Stop draining; anything still pending is cancelled rather than left waiting forever."""
        self._loop = None
        if self._computing is not None:
            self._computing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._computing
        pending, self._pending = self._pending, []
        for item in pending:
            item.future.cancel()

    async def search(
        self,
        version: Searchable,
        user_id: str,
        timestamp: int,
        history: list[str],
        depth: int,
        ratings: list[float] | None = None,
        rating_part: np.ndarray | None = None,
        query: np.ndarray | None = None,
    ) -> Neighbours:
        """Queue one query (its history: movie ids, newest first, and their stars; the user's part of the
        rating term) and wait for the batch it lands in.

        Depth 0 asks for the query embedding only (no index search). `query`: the served query, when the caller
        has it already (the batch then only searches with it).
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("Batcher.start() was not called")
        future: asyncio.Future[Neighbours] = loop.create_future()
        pending = _Pending(version, user_id, timestamp, history, ratings or [], depth, rating_part, future, query)
        if self._alone():
            # The only request the server is working on: nothing could join its batch, so it is computed now,
            # without the two turns of the loop (the drain, then the caller's wake-up) a batch costs.
            self._observe(1)
            [result] = _compute([pending])
            if isinstance(result, BaseException):
                raise result
            return result
        self._pending.append(pending)
        self._schedule()
        return await future

    def _alone(self) -> bool:
        in_flight = self._requests_in_flight
        # In thread mode the worker thread computes every batch; only there is _computing ever set.
        return in_flight is not None and not self._in_thread and not self._pending and in_flight() <= 1

    def _schedule(self) -> None:
        if not self._scheduled and self._computing is None and self._pending and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        batch = [pending for pending in batch if not pending.future.done()]  # callers that went away
        if batch:
            self._observe(len(batch))
            # On the event loop by default: on 2 cores a worker thread cost more server CPU per request and
            # batched worse (the GIL; docs/serving-speed.md). RECSYS_BATCH_IN_THREAD keeps the choice
            # measurable (benchmarks/load_recommend.py --compare-thread).
            if self._in_thread:
                assert self._loop is not None
                self._computing = self._loop.create_task(self._compute_in_thread(batch), name="batch")
                return
            _deliver(batch, _compute(batch))
        self._schedule()  # whatever is left over max_batch, or arrived while computing

    async def _compute_in_thread(self, batch: list[_Pending]) -> None:
        try:
            _deliver(batch, await asyncio.to_thread(_compute, batch))
        finally:
            self._computing = None
            self._schedule()


def _deliver(batch: list[_Pending], results: list[Neighbours | BaseException]) -> None:
    for pending, result in zip(batch, results, strict=True):
        if pending.future.done():  # the caller went away (client disconnect)
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)
