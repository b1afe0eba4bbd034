"""The ratings store on SQLite and on a real PostgreSQL: what the HTTP layer and the retraining job rely on."""

from __future__ import annotations

import multiprocessing
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from contract import ratings as ratings_module
from contract.database import BUSY_TIMEOUT_MS
from contract.ratings import Rating, RatingsStore, RatingsStoreError


def rating(user_id: str, movie_id: str, timestamp: int, value: float = 4.0) -> Rating:
    return Rating(user_id=user_id, movie_id=movie_id, rating=value, timestamp=timestamp)


def test_add_returns_increasing_ids_that_another_store_sees(store: RatingsStore, store_url: str) -> None:
    assert store.add([]) == []
    first = store.add([rating("u1", "m1", 10), rating("u1", "m2", 5), rating("u2", "m1", 7)])
    second = store.add([rating("u3", "m3", 1)])

    assert first == sorted(first) and len(set(first)) == 3
    assert second[0] > first[-1]
    with RatingsStore(store_url) as replica:  # a second API replica, its own connections
        assert replica.count() == 4
        assert replica.last_id() == second[0]
        stored = replica.history("u1")
    assert [(r.id, r.movie_id, r.timestamp) for r in stored] == [(first[1], "m2", 5), (first[0], "m1", 10)]
    assert all(r.received_at > 1_700_000_000 for r in stored)


def test_a_failed_batch_stores_nothing(store: RatingsStore) -> None:
    store.add([rating("u1", "m1", 1)])
    with pytest.raises(RatingsStoreError, match="cannot store ratings"):
        store.add([rating("u1", "m2", 2), Rating(user_id=None, movie_id="m3", rating=3.0, timestamp=3)])  # type: ignore[arg-type]
    assert store.count() == 1
    assert store.add([rating("u1", "m4", 4)])[0] > 1


def test_empty_store(store: RatingsStore) -> None:
    assert (store.count(), store.last_id()) == (0, 0)
    assert store.history("nobody") == []
    assert len(store.ratings_up_to(10)) == 0


def test_history_is_oldest_first_with_before_and_limit(store: RatingsStore) -> None:
    store.add([rating("u1", "late", 30), rating("u1", "early", 10), rating("u2", "other", 20)])
    store.add([rating("u1", "tie", 10), rating("u1", "mid", 20)])

    def movies(**kwargs: int | None) -> list[str]:
        return [r.movie_id for r in store.history("u1", **kwargs)]

    assert movies() == ["early", "tie", "mid", "late"]  # equal timestamps keep insertion (id) order
    assert movies(before=20) == ["early", "tie"]
    assert movies(limit=2) == ["mid", "late"]  # the newest two, still oldest first
    assert movies(before=30, limit=1) == ["mid"]
    assert movies(limit=0) == []
    assert movies(before=10) == []


def test_histories_batches_users_including_unknown_ones(store: RatingsStore) -> None:
    store.add([rating("u1", "a", 3), rating("u2", "b", 1), rating("u1", "c", 2), rating("u3", "d", 9)])

    found = store.histories(["u1", "ghost", "u3"])
    assert {u: [r.movie_id for r in rs] for u, rs in found.items()} == {"u1": ["c", "a"], "ghost": [], "u3": ["d"]}
    assert [r.movie_id for r in store.histories(["u1", "u3"], before=3)["u1"]] == ["c"]
    assert store.histories(["u1", "u3"], before=3)["u3"] == []
    assert store.histories([]) == {}


def test_ratings_up_to_reads_between_cutoffs_in_chunks(store: RatingsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratings_module, "FETCH_CHUNK", 2)  # several partitions from five rows
    ids = store.add([rating(f"u{i}", f"m{i}", 100 + i, value=i / 2) for i in range(5)])
    cutoff = store.last_id()
    store.add([rating("late", "m9", 999)])  # after the cutoff: not part of this run

    everything = store.ratings_up_to(cutoff)
    assert everything.id.tolist() == ids
    assert everything.user_id.tolist() == [f"u{i}" for i in range(5)]
    assert everything.movie_id.tolist() == [f"m{i}" for i in range(5)]
    np.testing.assert_array_equal(everything.rating, np.arange(5, dtype=np.float32) / 2)
    assert everything.timestamp.tolist() == [100, 101, 102, 103, 104]
    assert everything.rating.dtype == np.float32 and everything.timestamp.dtype == everything.id.dtype == np.int64

    assert store.ratings_up_to(ids[3], after_id=ids[1]).id.tolist() == ids[2:4]
    assert store.ratings_up_to(ids[1], after_id=ids[1]).id.size == 0
    empty = store.ratings_up_to(0)
    assert (len(empty), empty.rating.dtype, empty.user_id.dtype) == (0, np.float32, object)


def test_create_schema_is_idempotent(store: RatingsStore, store_url: str) -> None:
    store.add([rating("u1", "m1", 1)])
    store.create_schema()
    with RatingsStore(store_url) as replica:
        replica.create_schema()
        assert replica.count() == 1


def test_a_cutoff_never_passes_a_rating_still_being_committed(store: RatingsStore) -> None:
    """Retraining records last_id() as its cutoff and later reads after it: nothing may commit below a cutoff."""
    inserted, release = threading.Event(), threading.Event()
    slow = threading.Thread(target=store.add, args=([rating("slow", "m1", 1)],))
    fast = threading.Thread(target=store.add, args=([rating("fast", "m2", 2)],))

    def hold_the_slow_commit(conn: sa.Connection) -> None:
        if threading.current_thread() is slow:
            inserted.set()
            release.wait(timeout=10)

    sa.event.listen(store._engine, "commit", hold_the_slow_commit)  # between the slow INSERT and its COMMIT
    slow.start()
    assert inserted.wait(timeout=10)
    fast.start()
    fast.join(timeout=0.5)  # the fast writer must wait for the slow one, or its id would commit first
    cutoff = store.last_id()
    first_run = store.ratings_up_to(cutoff).user_id.tolist()
    release.set()
    slow.join()
    fast.join()

    second_run = store.ratings_up_to(store.last_id(), after_id=cutoff).user_id.tolist()
    assert first_run + second_run == ["slow", "fast"]


def test_concurrent_writers_and_an_incremental_reader_lose_nothing(store: RatingsStore) -> None:
    writers, adds = 4, 20
    done = threading.Event()
    read: list[int] = []

    def write(worker: int) -> None:
        for i in range(adds):
            store.add([rating(f"w{worker}", f"m{i}", i), rating(f"w{worker}", f"n{i}", i)])

    def retrain_repeatedly() -> None:
        cutoff = 0
        while not done.is_set():
            new_cutoff = store.last_id()
            read.extend(store.ratings_up_to(new_cutoff, after_id=cutoff).id.tolist())
            cutoff = new_cutoff
            time.sleep(0.002)  # leave the writers the GIL; a real retraining run does not spin
        read.extend(store.ratings_up_to(store.last_id(), after_id=cutoff).id.tolist())

    reader = threading.Thread(target=retrain_repeatedly)
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in [reader, *threads]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()

    assert store.count() == writers * adds * 2
    assert sorted(read) == read and len(set(read)) == len(read) == writers * adds * 2


def _add_one_at_a_time(url: str, worker: int, count: int) -> None:
    with RatingsStore(url) as store:
        for i in range(count):
            store.add([rating(f"writer{worker}", f"m{i}", i)])


def test_sqlite_replicas_share_one_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "ratings.db"
    url = f"sqlite:///{path}"
    with RatingsStore(url) as store:
        store.create_schema()
        with store._engine.connect() as conn:  # the per-connection settings, as every pooled connection has them
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS

        # Two API processes writing the same file at once, one rating per request.
        spawn = multiprocessing.get_context("spawn")
        processes = [spawn.Process(target=_add_one_at_a_time, args=(url, w, 200)) for w in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert [p.exitcode for p in processes] == [0, 0]

        assert store.count() == 400  # seen at once by a store that was already open
        columns = store.ratings_up_to(store.last_id())
        assert len(set(columns.id.tolist())) == 400
        for worker in range(2):
            assert [r.movie_id for r in store.history(f"writer{worker}")] == [f"m{i}" for i in range(200)]
    with sqlite3.connect(path) as plain:  # WAL is a property of the file, not only of our connections
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_unreachable_postgresql_raises_without_the_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RatingsStoreError) as raised:
        RatingsStore(f"postgresql+psycopg://reader:hunter2-secret@127.0.0.1:{port}/ratings")
    message = str(raised.value)
    assert "hunter2" not in message and raised.value.__cause__ is None
    assert f"127.0.0.1:{port}" in message and "server is running" in message


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://host/db"])
def test_bad_url_says_what_a_url_looks_like(url: str) -> None:
    with pytest.raises(RatingsStoreError, match=re.escape("sqlite:///path/to/ratings.db")):
        RatingsStore(url)


def test_since_reads_a_users_new_ratings_and_sees_every_later_commit(store: RatingsStore, store_url: str) -> None:
    """The server's per-request read keeps its connection open: it must still see commits made after it."""
    first = store.add([Rating("7", "1", 4.0, 300), Rating("8", "1", 3.0, 100)])
    assert store.since("7", after_id=0)[0].movie_id == "1"
    assert store.since("7", after_id=first[0]) == []  # nothing after the cutoff yet, read on the kept connection
    with RatingsStore(store_url) as other_replica:
        later = other_replica.add([Rating("7", "2", 5.0, 200), Rating("7", "3", 1.0, 400)])
    rows = store.since("7", after_id=first[0])
    assert [(r.id, r.movie_id) for r in rows] == [(later[0], "2"), (later[1], "3")]  # by time, then id
    assert store.since("9", after_id=0) == []


def test_a_per_request_read_on_a_dropped_connection_fails_cleanly_then_reconnects(
    store: RatingsStore, store_url: str
) -> None:
    """since() runs on the driver's cursor: a connection the database dropped is a RatingsStoreError (the
    server's 503), never a driver exception, and the next read opens a fresh connection."""
    store.add([rating("7", "1", 100)])
    assert len(store.since("7", after_id=0)) == 1  # opens this thread's kept connection
    kept = store._reader()
    if store_url.startswith("postgresql"):
        with sa.create_engine(store_url).connect() as admin:
            pid = kept.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            kept.rollback()
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        kept.connection.dbapi_connection.close()  # type: ignore[union-attr]
    with pytest.raises(RatingsStoreError, match="cannot read a user's ratings"):
        store.since("7", after_id=0)
    assert [r.movie_id for r in store.since("7", after_id=0)] == ["1"]


def test_the_per_request_read_is_a_range_scan_on_user_and_id(tmp_path: Path) -> None:
    """`since` must not walk a heavy rater's whole history to find the few ratings after a cutoff."""
    path = tmp_path / "plan.db"
    with RatingsStore(f"sqlite:///{path}") as store:
        store.create_schema()
        store.add([Rating("u1", "m1", 4.0, 880_000_000)])
    with sqlite3.connect(path) as conn:
        statement = str(ratings_module._SINCE.compile(dialect=sqlite_dialect()))  # the store's own query
        plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}", ("u1", 0)).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "USING INDEX ix_ratings_user_id_id (user_id=? AND id>?)" in details, details
