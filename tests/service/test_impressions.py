"""Impressions over HTTP: every answer stamped and recorded behind the request, drops counted, ratings credited."""

from __future__ import annotations

import gc
import os
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contract.impressions import Impression, ImpressionStore
from contract.ratings import RatingsStore
from service.impressions import ImpressionWriter, recommendation_ids
from tests.service.conftest import TS, V1, serving, wait_until


def metric(client: TestClient, name: str, **labels: str) -> float:
    """One sample of /metrics, 0 when absent."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ratings.db'}"


def answers(client: TestClient) -> list[dict[str, Any]]:
    """One GET, one POST and a batch of two, at the synthetic data's moment and at now."""
    got = [
        client.get("/recommend", params={"user_id": "1", "k": 4, "timestamp": TS}).json(),
        client.post("/recommend", json={"user_id": "2", "k": 3}).json(),
        *client.post(
            "/recommend/batch", json={"requests": [{"user_id": "3", "k": 2}, {"user_id": "stranger", "k": 5}]}
        ).json()["results"],
    ]
    assert all("items" in body for body in got), got
    return got


def test_every_answer_is_recorded_under_its_recommendation_id(models_dir: Path, url: str) -> None:
    with serving(models_dir, ratings_url=url) as client:
        bodies = answers(client)
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 4)
    assert len({body["recommendation_id"] for body in bodies}) == 4
    with RatingsStore(url) as ratings:
        store = ImpressionStore(ratings)
        for body in bodies:
            shown = store.impression(body["recommendation_id"])
            assert shown is not None
            assert (shown.user_id, shown.version, shown.shown_at, shown.personalised) == (
                body["user_id"],
                V1,
                body["timestamp"],
                body["personalised"],
            )
            assert list(shown.movie_ids) == [item["movie_id"] for item in body["items"]]
        assert not bodies[-1]["personalised"]  # the popularity answer is recorded too


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_a_failing_store_drops_and_counts_without_touching_answers(models_dir: Path, url: str) -> None:
    with serving(models_dir, ratings_url=url, impression_flush_seconds=0.2) as client:
        healthy = answers(client)
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 4)
        with sqlite3.connect(sqlite_path(url)) as db:  # the store refuses every write to the table
            db.execute("ALTER TABLE impressions RENAME TO impressions_away")
        during = answers(client)
        wait_until(lambda: metric(client, "recsys_impressions_dropped_total", reason="store_error") == 4)
        assert [b["items"] for b in during[:1]] == [b["items"] for b in healthy[:1]]  # the asked moment: same answer
        with sqlite3.connect(sqlite_path(url)) as db:
            db.execute("ALTER TABLE impressions_away RENAME TO impressions")
        answers(client)
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 8)


def test_a_stuck_store_fills_the_queue_and_requests_stay_fast(models_dir: Path, url: str) -> None:
    settings = {"impression_queue": 4, "impression_batch": 1, "impression_flush_seconds": 0.1}
    with serving(models_dir, ratings_url=url, **settings) as client:
        assert client.get("/recommend", params={"user_id": "1", "k": 3}).status_code == 200
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 1)  # the writer process is up
        lock = sqlite3.connect(sqlite_path(url), isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer waits on it (up to SQLite's timeout)
        try:
            slowest = 0.0
            for _ in range(20):
                started = time.perf_counter()
                assert client.get("/recommend", params={"user_id": "1", "k": 3, "timestamp": TS}).status_code == 200
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.02)
            dropped = metric(client, "recsys_impressions_dropped_total", reason="queue_full")
            assert dropped >= 20 - 4 - 1 and slowest < 1.0  # one in the writer's hands, four queued: the rest dropped
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 1 + 20 - dropped)


def test_a_writer_process_that_dies_is_started_again(models_dir: Path, url: str) -> None:
    with serving(models_dir, ratings_url=url, impression_flush_seconds=0.1) as client:
        answers(client)
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 4)
        writer = client.app.state.service.impressions  # type: ignore[attr-defined]
        first = writer.process_id
        assert first is not None
        os.kill(first, signal.SIGKILL)
        answers(client)
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 8)
        assert writer.process_id not in (None, first)
        assert metric(client, "recsys_impressions_dropped_total", reason="store_error") == 0


def test_ratings_after_answers_are_credited_per_version(models_dir: Path, url: str) -> None:
    with serving(models_dir, ratings_url=url, credit_settle_seconds=0, online_refresh_seconds=0.05) as client:
        single = client.get("/recommend", params={"user_id": "1", "k": 4, "timestamp": TS}).json()
        batch = client.post(
            "/recommend/batch",
            json={"requests": [{"user_id": "2", "k": 3, "timestamp": TS}, {"user_id": "3", "k": 3, "timestamp": TS}]},
        ).json()["results"]
        wait_until(lambda: metric(client, "recsys_impressions_written_total") == 3)
        ratings = [
            {"user_id": "1", "movie_id": single["items"][1]["movie_id"], "rating": 5.0, "timestamp": TS + 60},
            {"user_id": "3", "movie_id": batch[1]["items"][0]["movie_id"], "rating": 2.0, "timestamp": TS + 60},
            {"user_id": "2", "movie_id": batch[1]["items"][0]["movie_id"], "rating": 5.0, "timestamp": TS - 60},
        ]
        assert client.post("/ratings", json={"ratings": ratings}).status_code == 201
        wait_until(lambda: metric(client, "recsys_online_rated_impressions", version=V1) == 2)
        online = client.get("/model").json()["online"]["versions"][V1]
        assert (online["impressions"], online["rated"], online["liked"]) == (3, 2, 1)
        assert online["hits_by_rank"] == {"1": 1, "2": 1} and online["liked_hits_by_rank"] == {"1": 0, "2": 1}
        assert online["coverage"] == len({i["movie_id"] for b in [single, *batch] for i in b["items"]})
        text = client.get("/metrics").text
        assert re.search(rf'recsys_online_liked_share{{version="{V1}"}} 0\.333', text), text
        assert f'recsys_online_hits{{rank="2",version="{V1}"}} 1.0' in text


def test_retention_deletes_old_impressions_and_keeps_their_tallies(models_dir: Path, url: str) -> None:
    retention = {"impression_retention_days": 1 / 86_400, "online_refresh_seconds": 0.05}  # one second
    with serving(models_dir, ratings_url=url, **retention) as client:
        bodies = answers(client)
        wait_until(lambda: metric(client, "recsys_online_impressions", version=V1) == 4)
        with RatingsStore(url) as ratings:
            store = ImpressionStore(ratings)
            wait_until(lambda: store.count() == 0)
            assert store.impression(bodies[0]["recommendation_id"]) is None
        assert client.get("/model").json()["online"]["versions"][V1]["impressions"] == 4


def test_recommendation_ids_are_unique_time_ordered_and_differ_between_processes() -> None:
    first, second = recommendation_ids(), recommendation_ids()  # two servers: each draws its own tag
    ids = [next(first) for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids[:100])
    assert len(set(ids)) == len(ids) and ids == sorted(ids)  # the index grows at its right edge
    other = [next(second) for _ in range(1000)]
    assert {i[16:24] for i in other} != {i[16:24] for i in ids} and not set(other) & set(ids)


def test_queued_impressions_leave_the_collectors_watch_and_are_written_whole(tmp_path: Path) -> None:
    """What waits in the queue for a flush must not be walked by every pass of the garbage collector (it cost
    the server a tenth of its CPU per request at concurrency 64); what the writer stores is the answer."""
    url = f"sqlite:///{tmp_path / 'ratings.db'}"
    store = ImpressionStore(RatingsStore(url))
    store.create_schema()
    writer = ImpressionWriter(100, 10, 60.0, lambda reason, count: None, lambda count: None)
    writer.start(url)
    try:
        items = [{"movie_id": str(m), "title": f"Movie {m}"} for m in range(10)]
        answers = [
            {"user_id": str(u), "model_version": V1, "timestamp": TS + u, "personalised": True, "items": items}
            for u in range(5)
        ]
        answers.append({"user_id": "9", "model_version": V1, "timestamp": TS, "personalised": False, "items": []})
        stamped = [writer.stamp(answer) for answer in answers]
        gc.collect()
        assert writer.queued() == 6
        assert not any(gc.is_tracked(queued) for queued in writer._queue)
    finally:
        writer.stop()
    stored = store.impression(stamped[3]["recommendation_id"])
    assert stored == Impression(stamped[3]["recommendation_id"], "3", V1, TS + 3, tuple(map(str, range(10))), True)
    assert store.impression(stamped[5]["recommendation_id"]) == Impression(
        stamped[5]["recommendation_id"], "9", V1, TS, (), False
    )


def test_answers_queued_during_a_write_wait_for_the_next_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """One transaction a flush: answers that arrive while a batch is being stored are not written at once in a
    small transaction of their own (a stream of those cost about seven times the CPU an answer under load)."""
    writes: list[tuple[float, int]] = []
    flush = 0.2

    class SlowProcess:
        def __init__(self, url: str) -> None:
            self.pid = None

        def store(self, batch: list[Any]) -> int:
            if not writes:  # answers keep arriving while the first batch is stored
                for answer in late:
                    writer.stamp(answer)
            writes.append((time.monotonic(), len(batch)))
            return len(batch)

        def close(self, seconds: float = 5.0) -> None:
            pass

    monkeypatch.setattr("service.impressions.WriterProcess", SlowProcess)
    writer = ImpressionWriter(100, 50, flush, lambda reason, count: None, lambda count: None)
    items = [{"movie_id": "1", "title": "One"}]
    late = [{"user_id": "9", "model_version": V1, "timestamp": TS, "personalised": True, "items": items}] * 3
    writer.start("sqlite:///unused.db")
    try:
        for u in range(5):
            answer = {"user_id": str(u), "model_version": V1, "timestamp": TS, "personalised": True, "items": items}
            writer.stamp(answer)
        wait_until(lambda: len(writes) == 2)
    finally:
        writer.stop()
    (first_at, first), (second_at, second) = writes
    assert (first, second) == (5, 3)
    assert second_at - first_at >= flush * 0.9  # the late three waited for the next flush
