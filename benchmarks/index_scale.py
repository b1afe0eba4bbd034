"""Benchmark: the ScaNN index that export builds, at 10K, 100K and 1M movies.

Candidate embeddings are synthetic (a million-movie catalogue has no trained model here): d=32, clustered
around 256 "taste" centres with a log-normal norm per movie (a popularity-like spread, as logQ-trained
embeddings have), and queries that mix three centres. The searcher is chosen and built by
training/index.py exactly as `train` does (brute force up to index_exact_max movies, tree + AH above), and
the figures are those it records in the manifest: build time, serialised size, recall@100 against NumPy
brute force on 1,000 queries, and single-query latency on one thread (p50/p99). For comparison, the
single-query latency of exact NumPy scoring plus a partial sort over the same catalogue (NumPy's own
threads).

    python benchmarks/index_scale.py [--movies 10000 --movies 100000 --movies 1000000]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import training  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.machine import machine
from training.config import TrainConfig
from training.index import build_index

DIM, CENTRES = 32, 256


def synthetic_embeddings(movies: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 [movies, 32] candidates and [queries, 32] queries with cluster structure (see module doc)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    items = centres[rng.integers(0, CENTRES, movies)] + rng.normal(scale=0.6, size=(movies, DIM)).astype(np.float32)
    items *= rng.lognormal(0.0, 0.3, size=(movies, 1)).astype(np.float32)
    mixes = centres[rng.integers(0, CENTRES, (queries, 3))].mean(axis=1)
    query = mixes + rng.normal(scale=0.3, size=(queries, DIM)).astype(np.float32)
    return items.astype(np.float32), query.astype(np.float32)


def exact_latency_ms(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    times = []
    for query in queries:
        started = time.perf_counter()
        scores = items @ query
        top = np.argpartition(-scores, k - 1)[:k]
        top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - started)
    return np.asarray(times) * 1e3


def main(
    movies: Annotated[list[int], typer.Option(help="Catalogue sizes (repeatable).")] = [10_000, 100_000, 1_000_000],  # noqa: B006
    queries: Annotated[int, typer.Option(help="Queries for recall and latency.")] = 1000,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/index_scale.json"),
) -> None:
    config = TrainConfig()
    rows = []
    for size in movies:
        items, query = synthetic_embeddings(size, queries)
        with tempfile.TemporaryDirectory() as scratch:
            info = build_index(items, query, config, Path(scratch) / "scann")
        exact = exact_latency_ms(items, query[:200], config.index_recall_k)
        row = {
            **info.model_dump(),
            "exact_numpy_ms_p50": round(float(np.percentile(exact, 50)), 3),
            "exact_numpy_ms_p99": round(float(np.percentile(exact, 99)), 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "benchmark": "training/index.py's chosen ScaNN searcher on synthetic clustered embeddings (d=32)",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "targets": {"recall_at_100": 0.95, "query_ms": 1.0},
        "runs": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
