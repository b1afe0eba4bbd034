"""Benchmark: the ratings store's per-request read at 25M stored ratings (SQLite, and PostgreSQL if given).

The server reads, on every request, the user's ratings stored after the served version's cutoff
(`RatingsStore.since`); the retrainer reads everything. The store is filled with an ML-25M-sized synthetic
set (training/synth.py, seed 0: 162,541 users, heavy-tailed activity up to tens of thousands of ratings per
user) in bulk, then `since` is timed for users drawn uniformly, one call at a time on the kept connection:
- after the cutoff: the version trained on the first 99% of ids, so a request sees the user's newest ratings;
- everything (cutoff 0): a version that trained on none of them, the worst case, shown for the tail.
and `history(user, limit=20)`, the newest 20. Rows go to benchmarks/results/store_scale.json.

    python benchmarks/store_scale.py [--ratings 25000095] [--postgres-url postgresql+psycopg://...]
                                     [--ratings-csv /tmp/scale-synth/synth-25m/ratings.csv] [--no-sqlite]

A backend not measured in a run keeps its figures from the results file (filling 25M rows takes minutes).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from contract.ratings import RatingsStore
from training.synth import SynthSpec, write_synth

USERS, MOVIES = 162_541, 62_423


def _ratings_csv(work: Path, ratings: int) -> Path:
    target = work / f"store-{ratings}"
    if not (target / "ratings.csv").is_file():
        write_synth(SynthSpec(users=USERS, movies=MOVIES, ratings=ratings), target)
    return target / "ratings.csv"


def _frame(csv: Path) -> pd.DataFrame:
    """The ratings in arrival order (by timestamp), as the store would have received them."""
    frame = pd.read_csv(csv, dtype={"userId": str, "movieId": str, "rating": np.float64, "timestamp": np.int64})
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _rows(frame: pd.DataFrame) -> Iterator[tuple[str, str, float, int, int]]:
    """(user_id, movie_id, rating, timestamp, received_at): received when rated, as if posted live."""
    return zip(frame["userId"], frame["movieId"], frame["rating"], frame["timestamp"], frame["timestamp"], strict=True)


def _fill_sqlite(url: str, frame: pd.DataFrame) -> float:
    """Bulk insert with the stdlib driver (the store's own add() is per request); indexes as the store makes."""
    started = time.perf_counter()
    RatingsStore(url).create_schema()
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executemany(
            "INSERT INTO ratings (user_id, movie_id, rating, timestamp, received_at) VALUES (?, ?, ?, ?, ?)",
            _rows(frame),
        )
    return time.perf_counter() - started


def _fill_postgres(url: str, frame: pd.DataFrame) -> float:
    import psycopg

    started = time.perf_counter()
    RatingsStore(url).create_schema()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        with cursor.copy("COPY ratings (user_id, movie_id, rating, timestamp, received_at) FROM STDIN") as copy:
            for row in _rows(frame):
                copy.write_row(row)
        cursor.execute("ANALYZE ratings")
    return time.perf_counter() - started


def _percentiles(call: Callable[[str], object], users: list[str]) -> dict[str, float]:
    for user in users[:50]:
        call(user)  # warm the connection and the page cache
    times, rows = [], []
    for user in users:
        started = time.perf_counter()
        result = call(user)
        times.append(time.perf_counter() - started)
        rows.append(len(result))  # type: ignore[arg-type]
    ms = np.asarray(times) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "mean_rows": round(float(np.mean(rows)), 1),
        "max_rows": int(np.max(rows)),
    }


def _measure(url: str, total: int, users: list[str]) -> dict[str, object]:
    with RatingsStore(url) as store:
        cutoff = int(total * 0.99)
        return {
            "since_after_cutoff_99pct": _percentiles(lambda u: store.since(u, cutoff), users),
            "since_everything": _percentiles(lambda u: store.since(u, 0), users),
            "history_newest_20": _percentiles(lambda u: store.history(u, limit=20), users),
        }


def main(
    ratings: Annotated[int, typer.Option(help="Stored ratings (ML-25M: 25,000,095).")] = 25_000_095,
    queries: Annotated[int, typer.Option(help="Timed reads per figure.")] = 5000,
    work: Annotated[Path, typer.Option(help="Scratch folder (synthetic CSV and the SQLite file).")] = Path(
        "/tmp/store-scale"
    ),
    postgres_url: Annotated[str | None, typer.Option(help="Also measure this (empty) PostgreSQL database.")] = None,
    ratings_csv: Annotated[Path | None, typer.Option(help="A GroupLens ratings.csv to store instead.")] = None,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/store_scale.json"),
    sqlite: Annotated[bool, typer.Option(help="Measure SQLite (--no-sqlite: only PostgreSQL).")] = True,
) -> None:
    frame = _frame(ratings_csv or _ratings_csv(work, ratings))
    users = np.random.default_rng(0).choice(frame["userId"].unique(), size=queries).tolist()
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    backends = dict(earlier.get("backends", {})) if earlier.get("ratings") == len(frame) else {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if sqlite:
        sqlite_path = work / "ratings.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{sqlite_path}"
        fill = _fill_sqlite(url, frame)
        backends["sqlite"] = {"measured_at": now, "fill_seconds": round(fill, 1), **_measure(url, len(frame), users)}
        print(json.dumps(backends["sqlite"]), flush=True)
    if postgres_url:
        fill = _fill_postgres(postgres_url, frame)
        measured = _measure(postgres_url, len(frame), users)
        backends["postgresql"] = {"measured_at": now, "fill_seconds": round(fill, 1), **measured}
        print(json.dumps(backends["postgresql"]), flush=True)
    result = {
        "benchmark": "RatingsStore reads at ML-25M size, one at a time on the kept connection",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "ratings": len(frame),
        "users": int(frame["userId"].nunique()),
        "target_p99_ms": 2.0,
        "backends": backends,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
