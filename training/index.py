"""Builds the ScaNN index over candidate embeddings and measures its recall against brute force."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scann

RECALL_K = 100


@dataclass(frozen=True)
class IndexReport:
    """What the manifest records about the index."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    recall_at_100: float = 0.0
    num_movies: int = 0


def choose_index(num_movies: int, requested: str, exact_max: int) -> tuple[str, dict[str, Any]]:
    """Exact search below `exact_max` movies (it is ~0.1 ms there); tree + asymmetric hashing above.

    Leaves grow with sqrt(n) and the reorder budget is generous: recall depends mostly on reordering.
    """
    kind = requested if requested != "auto" else ("brute_force" if num_movies <= exact_max else "tree_ah")
    if kind == "brute_force":
        return kind, {}
    leaves = max(2, int(np.sqrt(num_movies)))
    return kind, {
        "num_leaves": leaves,
        "num_leaves_to_search": max(1, leaves // 10),
        "training_sample_size": min(num_movies, 250_000),
        "dimensions_per_block": 2,
        "anisotropic_quantization_threshold": 0.2,
        "reorder": min(num_movies, 1000),
    }


def build_searcher(embeddings: np.ndarray, kind: str, params: dict[str, Any]) -> Any:
    """A dot-product ScaNN searcher over float32 [num_movies, d] embeddings; neighbours are row numbers."""
    k = min(RECALL_K, len(embeddings))
    builder = scann.scann_ops_pybind.builder(embeddings.astype(np.float32), k, "dot_product")
    if kind == "brute_force":
        return builder.score_brute_force().build()
    return (
        builder.tree(
            num_leaves=params["num_leaves"],
            num_leaves_to_search=params["num_leaves_to_search"],
            training_sample_size=params["training_sample_size"],
        )
        .score_ah(
            params["dimensions_per_block"],
            anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"],
        )
        .reorder(params["reorder"])
        .build()
    )


def recall_at_k(searcher: Any, embeddings: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> float:
    """Share of the exact top-k (NumPy brute force) that the searcher returns, averaged over queries."""
    k = min(k, len(embeddings))
    found, _ = searcher.search_batched(queries.astype(np.float32), final_num_neighbors=k)
    exact = np.argpartition(-(queries @ embeddings.T), k - 1, axis=1)[:, :k]
    hits = [len(np.intersect1d(a, b)) for a, b in zip(found, exact, strict=True)]
    return float(np.sum(hits) / (k * len(queries)))


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


def build_index(
    embeddings: np.ndarray, queries: np.ndarray, requested: str, exact_max: int, directory: Path
) -> IndexReport:
    """Chooses, builds, measures and saves the index; returns what the manifest needs to know."""
    kind, params = choose_index(len(embeddings), requested, exact_max)
    searcher = build_searcher(embeddings, kind, params)
    recall = recall_at_k(searcher, embeddings, queries)
    save_searcher(searcher, directory)
    return IndexReport(kind=kind, params=params, recall_at_100=recall, num_movies=len(embeddings))
