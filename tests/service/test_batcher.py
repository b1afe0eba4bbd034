"""Dynamic batching: concurrent callers share one model call, and each gets its own answer back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.app import create_app
from service.batcher import Batcher
from service.config import Settings
from tests.service.conftest import TS, V1, assert_same_ranking, expected_items, serving_async
from tests.service.version_factory import Oracle


@dataclass(eq=False)
class FakeVersion:
    """Embeds user i at time t with history h as the vector [i, t, len(h)]; records the size of every model call."""

    name: str = "fake"
    calls: list[int] = field(default_factory=list)
    searches: list[int] = field(default_factory=list)
    fail: bool = False

    def embed(
        self,
        user_ids: list[str],
        timestamps: list[int],
        histories: list[list[str]],
        ratings: list[list[float]] | None = None,
    ) -> np.ndarray:
        self.calls.append(len(user_ids))
        if self.fail:
            raise RuntimeError("model exploded")
        rows = zip(user_ids, timestamps, histories, strict=True)
        return np.array([[float(u), float(t), float(len(h))] for u, t, h in rows], np.float32)

    def served_queries(self, queries: np.ndarray, rating_parts: list[np.ndarray | None]) -> np.ndarray:
        """Appends each request's rating part (none: nothing), so a test sees that each got its own."""
        if all(part is None for part in rating_parts):
            return queries
        parts = np.array([[np.nan] if part is None else part for part in rating_parts], np.float32)
        return np.hstack([queries, parts])

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        self.searches.append(depth)
        rows = np.tile(np.arange(depth), (len(queries), 1)) + queries[:, :1].astype(np.int64)
        return rows, np.repeat(queries[:, :1], depth, axis=1)


async def _gather(batcher: Batcher, version: Any, users: list[int]) -> list[Any]:
    return await asyncio.gather(*(batcher.search(version, str(u), 1000 + u, ["50"] * (u % 3), 3) for u in users))


def test_each_caller_gets_the_query_served_with_its_own_rating_part() -> None:
    async def scenario() -> list[Any]:
        batcher = Batcher(max_batch=256, in_thread=False, observe=lambda size: None)
        batcher.start()
        version = FakeVersion()
        calls = [
            batcher.search(version, str(u), 1000 + u, [], 3, [], np.array([10.0 * u], np.float32)) for u in range(6)
        ]
        results = await asyncio.gather(*calls)
        await batcher.stop()
        return results

    for user, hits in enumerate(asyncio.run(scenario())):
        assert hits.query.tolist() == [user, 1000 + user, 0, 10 * user]


def test_concurrent_callers_share_one_call_and_get_their_own_rows() -> None:
    async def scenario() -> tuple[FakeVersion, list[Any], list[int]]:
        sizes: list[int] = []
        batcher = Batcher(max_batch=256, in_thread=False, observe=sizes.append)
        batcher.start()
        version = FakeVersion()
        results = await _gather(batcher, version, list(range(50)))
        await batcher.stop()
        return version, results, sizes

    version, results, sizes = asyncio.run(scenario())
    assert version.calls == [50] and sizes == [50]
    assert version.searches == [4]  # one search for the batch
    for user, hits in enumerate(results):
        assert hits.query.tolist() == [user, 1000 + user, user % 3]  # each caller's own time and history
        assert hits.rows.tolist()[:3] == [user, user + 1, user + 2]  # depth 3 searched as 4


@pytest.mark.parametrize("in_thread", [False, True])
def test_max_batch_splits_the_queue(in_thread: bool) -> None:
    async def scenario() -> tuple[FakeVersion, list[Any]]:
        batcher = Batcher(max_batch=8, in_thread=in_thread, observe=lambda size: None)
        batcher.start()
        version = FakeVersion()
        results = await _gather(batcher, version, list(range(20)))
        await batcher.stop()
        return version, results

    version, results = asyncio.run(scenario())
    assert version.calls == [8, 8, 4]
    assert [hits.query[0] for hits in results] == list(range(20))


def test_a_lone_request_does_not_wait_for_company() -> None:
    async def scenario() -> list[int]:
        batcher = Batcher(max_batch=256, in_thread=False, observe=lambda size: None)
        batcher.start()
        version = FakeVersion()
        for user in range(3):
            await asyncio.wait_for(batcher.search(version, str(user), 0, [], 1), timeout=1)
        await batcher.stop()
        return version.calls

    assert asyncio.run(scenario()) == [1, 1, 1]


def test_the_only_request_in_flight_is_computed_at_once_and_concurrent_ones_still_share_a_call() -> None:
    async def scenario(in_flight: int) -> tuple[FakeVersion, list[Any], bool]:
        batcher = Batcher(256, in_thread=False, observe=lambda size: None, requests_in_flight=lambda: in_flight)
        batcher.start()
        version = FakeVersion()
        turned = asyncio.Event()
        asyncio.get_running_loop().call_soon(turned.set)  # runs on the loop's next turn
        lone = await batcher.search(version, "1", 0, [], 1)
        answered_before_a_turn = not turned.is_set()
        results = [lone, *await _gather(batcher, version, list(range(5)))]
        await batcher.stop()
        return version, results, answered_before_a_turn

    version, results, at_once = asyncio.run(scenario(in_flight=1))
    assert at_once and version.calls == [1, 1, 1, 1, 1, 1]  # alone each time: nothing waits for a batch
    assert [hits.query[0] for hits in results] == [1, 0, 1, 2, 3, 4]
    version, results, at_once = asyncio.run(scenario(in_flight=6))
    assert not at_once and version.calls == [1, 5]  # others in flight: queued, and the five share one call
    assert [hits.query[0] for hits in results] == [1, 0, 1, 2, 3, 4]


def test_a_lone_request_hears_of_its_failed_model_call_and_the_next_one_is_answered() -> None:
    async def scenario() -> tuple[BaseException | None, Any]:
        batcher = Batcher(256, in_thread=False, observe=lambda size: None, requests_in_flight=lambda: 1)
        batcher.start()
        failed: BaseException | None = None
        try:
            await batcher.search(FakeVersion(fail=True), "1", 0, [], 1)
        except RuntimeError as e:
            failed = e
        after = await batcher.search(FakeVersion(), "7", 0, [], 1)
        await batcher.stop()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert failed is not None and "exploded" in str(failed)
    assert after.query[0] == 7


def test_deep_requests_search_apart_from_shallow_ones() -> None:
    async def scenario() -> tuple[FakeVersion, list[Any]]:
        batcher = Batcher(max_batch=256, in_thread=False, observe=lambda size: None)
        batcher.start()
        version = FakeVersion()
        depths = [3, 600, 4, 17, 3]
        results = await asyncio.gather(*(batcher.search(version, str(u), 0, [], d) for u, d in enumerate(depths)))
        await batcher.stop()
        return version, results

    version, results = asyncio.run(scenario())
    assert version.calls == [5] and sorted(version.searches) == [4, 32, 1024]
    assert [len(hits.rows) for hits in results] == [4, 1024, 4, 32, 4]
    assert [hits.query[0] for hits in results] == list(range(5))


def test_two_versions_in_one_batch_are_computed_apart() -> None:
    """During a swap the queue can hold requests for the old and the new version."""

    async def scenario() -> tuple[FakeVersion, FakeVersion, list[Any]]:
        batcher = Batcher(max_batch=256, in_thread=False, observe=lambda size: None)
        batcher.start()
        old, new = FakeVersion("old"), FakeVersion("new")
        results = await asyncio.gather(*(batcher.search(old if u % 2 else new, str(u), 0, [], 2) for u in range(10)))
        await batcher.stop()
        return old, new, results

    old, new, results = asyncio.run(scenario())
    assert old.calls == [5] and new.calls == [5]
    assert [hits.query[0] for hits in results] == list(range(10))


def test_a_failing_model_call_fails_its_callers_and_the_batcher_lives_on() -> None:
    async def scenario() -> tuple[list[Any], Any]:
        batcher = Batcher(max_batch=256, in_thread=False, observe=lambda size: None)
        batcher.start()
        broken = FakeVersion(fail=True)
        failed = await asyncio.gather(
            *(batcher.search(broken, str(u), 0, [], 1) for u in range(3)), return_exceptions=True
        )
        after = await batcher.search(FakeVersion(), "7", 0, [], 1)
        await batcher.stop()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) and "exploded" in str(e) for e in failed)
    assert after.query[0] == 7


def test_concurrent_http_requests_are_batched_and_each_answer_is_its_own(
    shared_models_dir: Path, oracles: dict[str, Oracle]
) -> None:
    users = [str(u) for u in range(1, 21)] * 3

    async def scenario() -> tuple[list[Any], str]:
        app = create_app(Settings(models_dir=shared_models_dir, poll_seconds=0))
        async with serving_async(app) as client:
            responses = await asyncio.gather(
                *(client.get("/recommend", params={"user_id": u, "timestamp": TS, "k": 4}) for u in users)
            )
            return [r.json() for r in responses], (await client.get("/metrics")).text

    bodies, metrics = asyncio.run(scenario())
    for user, body in zip(users, bodies, strict=True):
        assert body["user_id"] == user
        assert_same_ranking(body, expected_items(oracles[V1], user, 4))
    count = next(float(x.split()[1]) for x in metrics.splitlines() if x.startswith("recsys_batch_size_count"))
    total = next(float(x.split()[1]) for x in metrics.splitlines() if x.startswith("recsys_batch_size_sum"))
    assert total >= len(users) and count < total / 4  # far fewer model calls than requests
