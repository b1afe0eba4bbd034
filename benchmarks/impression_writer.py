"""Benchmark: the impression writer's CPU per answer, by how many answers one transaction stores.

`ImpressionStore.add` is what the server's writer process runs once per flush (service/impression_process.py),
with every answer queued since the last one; at a given request rate the flush interval sets the transaction's
size. The store is the service's own (contract/impressions.py) on SQLite with its tuning, first filled with
`--stored` impressions, then `add` is timed in transactions of each size, alternating the sizes for `--rounds`
rounds. Users are drawn uniformly from ML-100K's 943 and each answer shows 10 of its 1,682 movies, as under the
load benchmark.
CPU is `time.thread_time` of the calling thread (what the writer takes from the two cores), wall time beside it.

    python benchmarks/impression_writer.py [--sizes 1500,5000,20000] [--stored 200000] [--rounds 3]
                                           [--out benchmarks/results/impression_writer.json]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.results_file import write_results
from contract.impressions import Impression, ImpressionStore
from contract.ratings import RatingsStore
from service.impressions import recommendation_ids

USERS, MOVIES, SHOWN = 943, 1682, 10
PER_ROUND = 60_000  # answers stored per size and round: whole transactions of that size


def answers(count: int, rng: np.random.Generator, ids: Iterator[str]) -> list[Impression]:
    """`count` answers as the writer would queue them, with the service's own time-ordered ids."""
    users = rng.integers(1, USERS + 1, count).tolist()
    movies = rng.integers(1, MOVIES + 1, (count, SHOWN)).tolist()
    now = int(time.time())
    return [
        Impression(next(ids), str(u), "20261207T000000Z", now, tuple(map(str, m)), True)
        for u, m in zip(users, movies, strict=True)
    ]


def measure(sizes: list[int], stored: int, rounds: int, seed: int) -> dict[int, dict[str, float]]:
    rng, ids = np.random.default_rng(seed), recommendation_ids()
    spent: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="impression_writer_") as tmp:
        store = ImpressionStore(RatingsStore(f"sqlite:///{tmp}/ratings.db"))
        store.create_schema()
        for _ in range(0, stored, 10_000):
            store.add(answers(10_000, rng, ids))
        for _ in range(rounds):
            for size in sizes:
                for _ in range(max(1, PER_ROUND // size)):
                    batch = answers(size, rng, ids)
                    cpu, wall = time.thread_time(), time.perf_counter()
                    store.add(batch)
                    spent[size].append(((time.thread_time() - cpu) / size, (time.perf_counter() - wall) / size))
    return {
        size: {
            "transactions": len(rows),
            "cpu_us_per_answer": round(statistics.median(c for c, _ in rows) * 1e6, 2),
            "wall_us_per_answer": round(statistics.median(w for _, w in rows) * 1e6, 2),
        }
        for size, rows in spent.items()
    }


def main(
    sizes: Annotated[str, typer.Option(help="Comma-separated answers per transaction")] = "1500,5000,20000",
    stored: Annotated[int, typer.Option(help="Impressions stored before timing")] = 200_000,
    rounds: Annotated[int, typer.Option(min=1, help="Alternating rounds over the sizes")] = 3,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/impression_writer.json"),
) -> None:
    """Time ImpressionStore.add per answer for each transaction size and write the medians."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    figures = measure([int(s) for s in sizes.split(",")], stored, rounds, seed)
    for size, row in figures.items():
        print(f"{size:>6} answers a transaction: {row['cpu_us_per_answer']:6.2f} µs CPU, "
              f"{row['wall_us_per_answer']:6.2f} µs wall an answer ({row['transactions']} transactions)")  # fmt: skip
    results: dict[str, Any] = {
        "started_at": started,
        "machine": machine(),
        "stored_before": stored,
        "rounds": rounds,
        "backend": "sqlite",
        "by_answers_per_transaction": {str(size): row for size, row in figures.items()},
    }
    write_results(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
