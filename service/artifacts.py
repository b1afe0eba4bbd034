"""Turn one models/<version>/ directory into a verified, loaded, warmed-up ModelVersion."""

import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scann  # noqa: F401  # registers ScaNN's ops before TensorFlow loads anything that may use them
import tensorflow as tf
from scann.scann_ops.py import scann_ops_pybind

from service.errors import VersionRejectedError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def configure_tensorflow(threads: int) -> None:
    """Pin TensorFlow's thread pools; only possible before its runtime starts, so later calls just log."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.info("TensorFlow already initialised; keeping its thread settings")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_version(path: Path) -> dict[str, Any]:
    """Check a version directory against its manifest: every listed file present and unchanged, no extras.

    Returns:
        The parsed manifest.
    Raises:
        VersionRejectedError: saying which files are missing, extra or changed.
    """
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise VersionRejectedError(
            f"version {path.name!r} has no {MANIFEST}: it is incomplete (the exporter writes it last)"
        )
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except ValueError as e:
        raise VersionRejectedError(f"version {path.name!r}: {MANIFEST} is not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise VersionRejectedError(f"version {path.name!r}: {MANIFEST} format_version is not {FORMAT_VERSION}")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise VersionRejectedError(f"version {path.name!r}: {MANIFEST} has no 'files' checksums")

    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    missing = sorted(listed.keys() - present)
    extra = sorted(present - listed.keys())
    changed = [name for name in sorted(listed.keys() & present) if _sha256(path / name) != listed[name]]
    problems = [
        f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (("missing", missing), ("extra", extra), ("checksum mismatch", changed))
        if names
    ]
    if problems:
        raise VersionRejectedError(f"version {path.name!r} does not match its manifest; " + "; ".join(problems))
    return manifest


@dataclass(frozen=True)
class SearchPlan:
    """ScaNN search-time parameters scaled to how deep a request must look into the catalogue."""

    num_movies: int
    num_leaves: int | None = None  # tree partitioning: leaves in the index
    leaves_to_search: int = 1  # the index's own default
    reorder: int | None = None  # exact re-scoring budget, if the index has one

    @classmethod
    def from_config(cls, config: str, num_movies: int) -> "SearchPlan":
        """Read the partitioning and reordering settings out of a searcher's text config."""

        def number(pattern: str) -> int | None:
            found = re.search(pattern + r":\s*(\d+)", config)
            return int(found.group(1)) if found else None

        return cls(
            num_movies=num_movies,
            num_leaves=number(r"num_children"),
            leaves_to_search=number(r"max_spill_centers") or 1,
            reorder=number(r"approx_num_neighbors"),
        )

    def params(self, depth: int) -> dict[str, int]:
        """Keyword arguments for search_batched returning `depth` neighbours (ScaNN pads short answers)."""
        params = {"final_num_neighbors": depth}
        if self.num_leaves:
            # Search leaves that hold about twice `depth` points, never fewer than the index was tuned for.
            wanted = math.ceil(2 * depth * self.num_leaves / self.num_movies)
            params["leaves_to_search"] = min(self.num_leaves, max(self.leaves_to_search, wanted))
        if self.reorder:
            # ScaNN returns at most the reorder budget, so a deep request needs a deeper budget.
            params["pre_reorder_num_neighbors"] = max(self.reorder, depth)
        return params


@dataclass(eq=False)
class ModelVersion:
    """Everything one version serves from, held in memory; immutable once loaded."""

    name: str
    manifest: dict[str, Any]
    movies: list[dict[str, Any]]  # row -> {"movie_id", "title", "genres"}, as in movies.json
    movie_rows: dict[str, int]
    genre_masks: dict[str, np.ndarray]  # genre -> bool [num_movies]
    user_rows: dict[str, int]  # training user_id -> index into seen_indptr
    seen_indptr: np.ndarray
    seen_movie_rows: np.ndarray
    popularity: np.ndarray  # movie rows, most rated first
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    searcher: Any
    search_plan: SearchPlan
    query_model: Any  # the loaded SavedModel; kept so its variables outlive the signature below
    query_fn: Any
    loaded_at: float = field(default_factory=time.time)
    _all_true: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._all_true = np.ones(len(self.movies), dtype=bool)

    @property
    def num_movies(self) -> int:
        return len(self.movies)

    def all_movies(self) -> np.ndarray:
        """A fresh bool [num_movies] mask with every movie allowed (a copy: np.ones is slower)."""
        return self._all_true.copy()

    def seen(self, user_id: str) -> np.ndarray | None:
        """Movie rows the user rated in training, or None for a user the model never saw."""
        index = self.user_rows.get(user_id)
        if index is None:
            return None
        return self.seen_movie_rows[self.seen_indptr[index] : self.seen_indptr[index + 1]]

    def embed(self, user_ids: list[str], timestamps: list[int]) -> np.ndarray:
        """One query_model call for the whole batch: float32 [batch, d]."""
        out = self.query_fn(
            user_id=tf.constant(user_ids, dtype=tf.string), timestamp=tf.constant(timestamps, dtype=tf.int64)
        )
        return out["embedding"].numpy()

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """One batched ScaNN search: movie rows and dot-product scores [batch, depth], best first.

        Short answers are padded by ScaNN with NaN scores; callers drop non-finite scores.
        """
        depth = min(depth, self.num_movies)
        rows, scores = self.searcher.search_batched(queries, **self.search_plan.params(depth))
        return rows.astype(np.int64), scores


def _read_seen(path: Path, num_movies: int) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as seen:
        user_ids, indptr, rows = seen["user_ids"], seen["indptr"].astype(np.int64), seen["movie_rows"]
    if len(indptr) != len(user_ids) + 1 or indptr[-1] != len(rows):
        raise ValueError("seen.npz indptr does not match user_ids and movie_rows")
    if len(rows) and (rows.min() < 0 or rows.max() >= num_movies):
        raise ValueError("seen.npz movie_rows point outside movies.json")
    return {str(u): i for i, u in enumerate(user_ids.tolist())}, indptr, rows.astype(np.int64)


def _load_query_fn(path: Path) -> tuple[Any, Any]:
    model = tf.saved_model.load(str(path))
    if "serving_default" not in model.signatures:
        raise ValueError("query_model has no 'serving_default' signature")
    fn = model.signatures["serving_default"]
    inputs = set(fn.structured_input_signature[1])
    if inputs != {"user_id", "timestamp"}:
        raise ValueError(f"query_model signature takes {sorted(inputs)}, expected ['timestamp', 'user_id']")
    return model, fn


def _genre_masks(movies: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for row, movie in enumerate(movies):
        for genre in movie["genres"]:
            masks.setdefault(genre, np.zeros(len(movies), dtype=bool))[row] = True
    return masks


def _read(path: Path, manifest: dict[str, Any]) -> ModelVersion:
    movies: list[dict[str, Any]] = [
        {"movie_id": str(m["movie_id"]), "title": str(m["title"]), "genres": [str(g) for g in m["genres"]]}
        for m in json.loads((path / "movies.json").read_bytes())
    ]
    embeddings = np.load(path / "candidate_embeddings.npy", allow_pickle=False).astype(np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(movies):
        raise ValueError(f"candidate_embeddings.npy is {embeddings.shape}, expected [{len(movies)}, d]")
    popularity = np.load(path / "popularity.npy", allow_pickle=False).astype(np.int64)
    if sorted(popularity.tolist()) != list(range(len(movies))):
        raise ValueError("popularity.npy is not a permutation of the movie rows")
    user_rows, indptr, seen_rows = _read_seen(path / "seen.npz", len(movies))
    # load_searcher's compatibility shim would write into the version directory; the contract has the file.
    searcher = scann_ops_pybind.load_searcher(str(path / "scann"), assets_backcompat_shim=False)
    model, fn = _load_query_fn(path / "query_model")
    return ModelVersion(
        name=path.name,
        manifest=manifest,
        movies=movies,
        movie_rows={m["movie_id"]: row for row, m in enumerate(movies)},
        genre_masks=_genre_masks(movies),
        user_rows=user_rows,
        seen_indptr=indptr,
        seen_movie_rows=seen_rows,
        popularity=popularity,
        candidate_embeddings=embeddings,
        searcher=searcher,
        search_plan=SearchPlan.from_config(searcher.config(), len(movies)),
        query_model=model,
        query_fn=fn,
    )


def warm_up(version: ModelVersion, max_batch: int) -> None:
    """Run the query model and the search at the batch sizes serving will use, so no request pays tracing.

    Raises:
        ValueError: when the query embeddings do not fit the candidate embeddings.
    """
    users = [*list(version.user_rows)[: max(max_batch - 1, 0)], "__warm_up_unknown_user__"]
    timestamp = int(version.manifest.get("data", {}).get("timestamp_max", 0))
    for size in sorted({1, len(users)}):
        queries = version.embed(users[:size], [timestamp] * size)
        if queries.shape != (size, version.candidate_embeddings.shape[1]):
            raise ValueError(
                f"query_model returns {queries.shape} for {size} users; candidate embeddings are "
                f"{version.candidate_embeddings.shape}"
            )
        version.search(queries, 10)


def load_version(path: Path, max_batch: int) -> ModelVersion:
    """Verify, load and warm up one version (blocking: seconds; run it off the event loop).

    Raises:
        VersionRejectedError: for anything wrong with the directory, with the reason.
    """
    started = time.perf_counter()
    manifest = verify_version(path)
    try:
        version = _read(path, manifest)
        warm_up(version, max_batch)
    except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError, RuntimeError) as e:
        raise VersionRejectedError(f"version {path.name!r} failed to load: {e}") from e
    log.info("loaded version %s in %.2f s", path.name, time.perf_counter() - started)
    return version
