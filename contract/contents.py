"""Reading a version's files back with every check a server relies on, so no side trusts a file unchecked.

The server's loader reads through these functions, and the promotion gate runs that loader, so a version
the gate passes is one a server accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from contract.checksums import file_problems
from contract.manifest import (
    CANDIDATE_EMBEDDINGS,
    CONTENT_EMBEDDINGS,
    MOVIES,
    POPULARITY,
    RATING_MODEL,
    REQUIRED_ENTRIES,
    SEEN,
    Manifest,
    VersionError,
    read_manifest,
)
from contract.rating_model import RatingModel, load_rating_model
from contract.user_ratings import UserRatings


def verified_manifest(version_dir: Path) -> Manifest:
    """The manifest, once it lists every required entry and every listed file is present, unchanged, alone.

    Raises:
        VersionError: naming the missing entries, or the missing, extra or changed files.
    """
    manifest = read_manifest(version_dir)
    absent = [
        entry
        for entry in REQUIRED_ENTRIES
        if entry not in manifest.files and not any(name.startswith(f"{entry}/") for name in manifest.files)
    ]
    if absent:
        raise VersionError(f"version {version_dir.name!r} lacks {', '.join(absent)}: its manifest lists no such files")
    problems = file_problems(version_dir, manifest.files)
    if problems:
        raise VersionError(f"version {version_dir.name!r} does not match its manifest; " + "; ".join(problems))
    return manifest


def read_movies(version_dir: Path) -> list[dict[str, Any]]:
    """movies.json as [{"movie_id": str, "title": str, "genres": [str]}], in row order, ids unique."""
    try:
        raw = json.loads((version_dir / MOVIES).read_bytes())
        movies = [
            {"movie_id": str(m["movie_id"]), "title": str(m["title"]), "genres": [str(g) for g in m["genres"]]}
            for m in raw
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VersionError(f"{MOVIES} is not a list of movies with movie_id, title, genres ({error})") from None
    if len({m["movie_id"] for m in movies}) != len(movies):
        raise VersionError(f"{MOVIES} repeats a movie_id")
    return movies


def read_candidate_embeddings(version_dir: Path, num_movies: int, dim: int) -> np.ndarray:
    """float32 [num_movies, dim], all finite: a NaN row would silently never be recommended."""
    return _read_matrix(version_dir, CANDIDATE_EMBEDDINGS, (num_movies, dim))


def read_content_embeddings(version_dir: Path, num_movies: int, width: int) -> np.ndarray | None:
    """float32 [num_movies, width], all finite, or None for a version written before the file existed."""
    if not (version_dir / CONTENT_EMBEDDINGS).exists():
        return None
    return _read_matrix(version_dir, CONTENT_EMBEDDINGS, (num_movies, width))


def read_rating_model(version_dir: Path, manifest: Manifest, num_movies: int) -> RatingModel | None:
    """The version's rating term (layout.RATING_MODEL), or None where the manifest says it has none.

    Raises:
        VersionError: the file is missing, unreadable, or does not fit the version's movies and embeddings.
    """
    if not manifest.rating_width:
        return None
    if RATING_MODEL not in manifest.files:
        raise VersionError(f"the manifest says rating_width {manifest.rating_width} but lists no {RATING_MODEL}")
    try:
        model = load_rating_model(version_dir / RATING_MODEL, num_movies, manifest.embedding_dim)
    except (OSError, ValueError, KeyError) as error:
        raise VersionError(f"{RATING_MODEL} cannot be read: {error}") from None
    if model.width != manifest.rating_width:
        raise VersionError(f"{RATING_MODEL} is {model.width} columns wide; the manifest says {manifest.rating_width}")
    if not all(np.isfinite(a).all() for a in (model.item_bias, model.item_factors, model.tower_covariance)):
        raise VersionError(f"{RATING_MODEL} holds values that are not finite")
    return model


def _read_matrix(version_dir: Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    """float32 array of `shape` from `name`, all finite."""
    matrix = _load_npy(version_dir / name).astype(np.float32)
    if matrix.shape != shape:
        raise VersionError(f"{name} is {matrix.shape}, expected {shape}")
    if not np.isfinite(matrix).all():
        raise VersionError(f"{name} holds non-finite values")
    return matrix


def read_popularity(version_dir: Path, num_movies: int) -> np.ndarray:
    """int64 movie rows, most rated first: a permutation of every row, so the fallback can fill any k."""
    popularity = _load_npy(version_dir / POPULARITY).astype(np.int64)
    if popularity.shape != (num_movies,) or not np.array_equal(np.sort(popularity), np.arange(num_movies)):
        raise VersionError(f"{POPULARITY} is not a permutation of the {num_movies} movie rows")
    return popularity


def read_seen(version_dir: Path, num_movies: int) -> UserRatings:
    """seen.npz: the version's ratings by user (str ids, each user's oldest first, with their stars where the
    version kept them), its CSR structure and movie rows checked against the catalogue."""
    try:
        with np.load(version_dir / SEEN, allow_pickle=False) as seen:
            user_ids, indptr, rows = seen["user_ids"].astype(str), seen["indptr"], seen["movie_rows"]
            timestamps = seen["timestamps"].astype(np.int64)
            values = seen["ratings"].astype(np.float32) if "ratings" in seen.files else None
    except (OSError, ValueError, KeyError) as error:
        raise VersionError(f"{SEEN} cannot be read ({error})") from None
    indptr, rows = indptr.astype(np.int64), rows.astype(np.int64)
    if len(indptr) != len(user_ids) + 1 or indptr[0] != 0 or indptr[-1] != len(rows) or np.any(np.diff(indptr) < 0):
        raise VersionError(f"{SEEN} indptr does not match user_ids and movie_rows")
    if len(timestamps) != len(rows) or (values is not None and len(values) != len(rows)):
        raise VersionError(f"{SEEN} has timestamps or ratings that do not match its {len(rows)} movie_rows")
    if len(rows) and (rows.min() < 0 or rows.max() >= num_movies):
        raise VersionError(f"{SEEN} movie_rows point outside {MOVIES}")
    if len(np.unique(user_ids)) != len(user_ids):
        raise VersionError(f"{SEEN} repeats a user_id")
    return UserRatings(user_ids=user_ids, indptr=indptr, movie_rows=rows, timestamps=timestamps, values=values)


RECALL_CHUNK_CELLS = 32 * 2**20  # query x movie scores held at once (128 MB; a million movies: 32 queries)


def recall_at_k(found: np.ndarray, embeddings: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Share of the exact dot-product top-k (NumPy brute force) that an index returned in `found` [q, >=k].

    The brute force runs a few queries at a time: all of them at once over a million movies took gigabytes
    (docs/scale.md).
    """
    k = min(k, len(embeddings))
    chunk = max(1, RECALL_CHUNK_CELLS // max(len(embeddings), 1))
    hits = 0
    for lo in range(0, len(queries), chunk):
        scores = queries[lo : lo + chunk] @ embeddings.T
        np.negative(scores, out=scores)
        exact = np.argpartition(scores, k - 1, axis=1)[:, :k]
        hits += sum(len(np.intersect1d(a[:k], b)) for a, b in zip(found[lo : lo + chunk], exact, strict=True))
    return float(hits / (k * len(queries))) if len(queries) else 1.0


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise VersionError(f"{path.name} cannot be read ({error})") from None
