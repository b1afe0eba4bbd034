"""Builds the ScaNN index over candidate embeddings and measures its recall against brute force."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import scann

from contract.contents import recall_at_k
from contract.manifest import IndexInfo, IndexParams
from training.config import TrainConfig


def choose_index(num_movies: int, config: TrainConfig) -> tuple[str, IndexParams]:
    """Exact search up to `index_exact_max` movies (cheap there: docs/scale.md); tree + asymmetric hashing above.

    Leaves grow with sqrt(n) and the reorder budget is generous: recall depends mostly on reordering.
    """
    auto = "brute_force" if num_movies <= config.index_exact_max else "tree_ah"
    kind = config.index if config.index != "auto" else auto
    if kind == "brute_force":
        return kind, IndexParams()
    leaves = max(2, int(np.sqrt(num_movies)))
    return kind, IndexParams(
        num_leaves=leaves,
        num_leaves_to_search=max(1, round(leaves * config.index_leaves_to_search_share)),
        training_sample_size=min(num_movies, config.index_training_sample),
        dimensions_per_block=config.index_dimensions_per_block,
        anisotropic_quantization_threshold=config.index_quantization_threshold,
        reorder=min(num_movies, config.index_reorder),
    )


def build_searcher(embeddings: np.ndarray, kind: str, params: IndexParams, k: int = 100) -> Any:
    """A dot-product ScaNN searcher over float32 [num_movies, d] embeddings; neighbours are row numbers."""
    builder = scann.scann_ops_pybind.builder(embeddings.astype(np.float32), min(k, len(embeddings)), "dot_product")
    if kind == "brute_force":
        return builder.score_brute_force().build()
    return (
        builder.tree(
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.num_leaves_to_search,
            training_sample_size=params.training_sample_size,
        )
        .score_ah(
            params.dimensions_per_block,
            anisotropic_quantization_threshold=params.anisotropic_quantization_threshold,
        )
        .reorder(params.reorder)
        .build()
    )


def searcher_recall(searcher: Any, embeddings: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Recall@k of `searcher` against NumPy brute force on `queries` float32 [q, d]."""
    found, _ = searcher.search_batched(queries.astype(np.float32), final_num_neighbors=min(k, len(embeddings)))
    return recall_at_k(found, embeddings, queries, k)


def save_searcher(searcher: Any, directory: Path) -> None:
    """Serialises the searcher and makes its asset paths relative, so the version directory can be renamed.

    ScaNN writes absolute paths into scann_assets.pbtxt; load_searcher resolves bare names against the
    directory it is given.
    """
    directory.mkdir(parents=True)
    searcher.serialize(str(directory))
    assets = directory / "scann_assets.pbtxt"
    text = assets.read_text()
    assets.write_text(re.sub(r'asset_path: "[^"]*/([^"/]+)"', r'asset_path: "\1"', text))


def query_latency_ms(searcher: Any, queries: np.ndarray, k: int, repeats: int = 1) -> np.ndarray:
    """Milliseconds per single-query search (ScaNN's one-query search runs on the calling thread only)."""
    queries = queries.astype(np.float32)
    searcher.search(queries[0], final_num_neighbors=k)  # the first call allocates
    times = []
    for _ in range(repeats):
        for query in queries:
            started = time.perf_counter()
            searcher.search(query, final_num_neighbors=k)
            times.append(time.perf_counter() - started)
    return np.asarray(times) * 1e3


def build_index(embeddings: np.ndarray, queries: np.ndarray, config: TrainConfig, directory: Path) -> IndexInfo:
    """Chooses, builds, measures and saves the index; returns what the manifest records about it."""
    kind, params = choose_index(len(embeddings), config)
    started = time.perf_counter()
    searcher = build_searcher(embeddings, kind, params, config.index_recall_k)
    build_seconds = time.perf_counter() - started
    k = min(config.index_recall_k, len(embeddings))
    recall = searcher_recall(searcher, embeddings, queries, config.index_recall_k)
    latency = query_latency_ms(searcher, queries, k) if len(queries) else np.zeros(1)
    save_searcher(searcher, directory)
    return IndexInfo(
        kind=kind,  # type: ignore[arg-type]
        params=params,
        recall_k=config.index_recall_k,
        recall=recall,
        num_movies=len(embeddings),
        build_seconds=round(build_seconds, 3),
        size_bytes=sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()),
        query_ms_p50=round(float(np.percentile(latency, 50)), 4),
        query_ms_p99=round(float(np.percentile(latency, 99)), 4),
    )
