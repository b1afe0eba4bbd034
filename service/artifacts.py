"""Turn one models/<version>/ directory into a verified, loaded, warmed-up ModelVersion."""

import logging
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scann  # noqa: F401  # registers ScaNN's ops before TensorFlow loads anything that may use them
import tensorflow as tf
from scann.scann_ops.py import scann_ops_pybind

from contract import manifest as layout
from contract.contents import (
    read_candidate_embeddings,
    read_content_embeddings,
    read_movies,
    read_popularity,
    read_rating_model,
    read_seen,
    recall_at_k,
    verified_manifest,
)
from contract.manifest import IndexInfo, Manifest, QueryInfo, VersionError
from contract.query_tower import (
    MIRROR_TOLERANCE,
    QueryTower,
    max_difference,
    probe_queries,
    read_query_weights,
    tower_inputs,
)
from contract.rating_model import RatingModel, served_candidates
from contract.user_ratings import UserRatings, known_at, newest_first, read_as_taste
from service.at_now import AtNow, UserState
from service.errors import VersionRejectedError

log = logging.getLogger(__name__)

_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_VALUES = np.zeros(0, dtype=np.float32)


def configure_tensorflow(threads: int) -> None:
    """Pin TensorFlow's thread pools; only possible before its runtime starts, so later calls just log."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.info("TensorFlow already initialised; keeping its thread settings")


@dataclass(frozen=True)
class SearchPlan:
    """ScaNN search-time parameters scaled to how deep a request must look into the catalogue."""

    num_movies: int
    num_leaves: int | None = None  # tree partitioning: leaves in the index
    leaves_to_search: int = 1  # the index's own default
    reorder: int | None = None  # exact re-scoring budget, if the index has one

    @classmethod
    def from_index(cls, index: IndexInfo) -> "SearchPlan":
        """The settings the index was built with, as the manifest records them."""
        params = index.params
        return cls(
            num_movies=index.num_movies,
            num_leaves=params.num_leaves,
            leaves_to_search=params.num_leaves_to_search or 1,
            reorder=params.reorder,
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
    """Everything one version serves from, held in memory; immutable once loaded, but for what it keeps for
    known users at now (`now_key`, service/at_now.py), which only requests fill."""

    name: str
    manifest: Manifest
    movies: list[dict[str, Any]]  # row -> {"movie_id", "title", "genres"}, as in movies.json
    row_of_movie: dict[str, int]  # movie_id -> row
    genre_masks: dict[str, np.ndarray]  # genre -> bool [num_movies]
    ratings: UserRatings  # the version's ratings by user (seen.npz), each user's oldest first
    user_rows: dict[str, int]  # training user_id -> its position in `ratings`: one dict lookup a request
    popularity: np.ndarray  # movie rows, most rated first
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    # float32 [rows, d - item_item_dim]: the movies' content read with a blank id (layout.CONTENT_EMBEDDINGS), the
    # version's own rows only (a movie added later is embedded that way already); None in older versions
    content_embeddings: np.ndarray | None
    searcher: Any
    search_plan: SearchPlan
    # The query tower: NumPy arrays when the version has them (proved equal to its SavedModel at load), else
    # the loaded SavedModel and its signature.
    query_tower: QueryTower | None
    query_model: Any  # kept so its variables outlive the signature below; None with query_tower
    query_fn: Any
    rating: RatingModel | None = None  # the rating term of every served score (contract/rating_model.py)
    # float64 [num_users, 1 + f]: each known user's rating part from all their ratings in the version, folded
    # in once at load: a request at now with nothing stored since reads it instead of solving again.
    rating_parts: np.ndarray | None = None
    loaded_at: float = field(default_factory=time.time)
    # float32 [num_movies, d (+ rating width)]: what the searcher indexes, the candidate embeddings followed by
    # the rating term's item part (an added movie's: 0).
    served_candidates: np.ndarray = field(init=False, repr=False)
    _all_true: np.ndarray = field(init=False, repr=False)
    _term_columns: np.ndarray = field(init=False, repr=False)  # served_candidates' rating-term columns (rerank)
    # A known user's state, served query and plain answers at now, with nothing stored since the version and
    # nothing in the request, filled as users ask: every input is fixed then. A catalogue change serves a new
    # object (service/live_version.py), so nothing kept outlives the movies it was ranked from. At most one per
    # known user, and at most RECSYS_AT_NOW_USERS (ML-100K: about 5 KB each).
    _at_now: dict[int, AtNow] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._all_true = np.ones(len(self.movies), dtype=bool)
        self.served_candidates = served_candidates(self.candidate_embeddings, self.rating)
        width = 0 if self.rating is None else self.rating.width
        self._term_columns = np.ascontiguousarray(self.served_candidates[:, self.served_candidates.shape[1] - width :])

    @property
    def num_movies(self) -> int:
        return len(self.movies)

    def all_movies(self) -> np.ndarray:
        """A fresh bool [num_movies] mask with every movie allowed (a copy: np.ones is slower)."""
        return self._all_true.copy()

    def is_available(self, row: int) -> bool:
        """Whether movie `row` may be answered (false once withdrawn from the catalogue: service/live_version.py)."""
        return bool(self._all_true[row])

    @property
    def history_length(self) -> int:
        """Movie ids the query model reads as history (0: it takes none)."""
        return self.manifest.query.history_length

    def effective_timestamp(self, timestamp: int) -> int:
        """The timestamp the query model uses: clamped into its training range, as the model does itself."""
        query = self.manifest.query
        return min(max(timestamp, query.timestamp_min), query.timestamp_max)

    def ratings_of(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Movie rows the user rated in this version's data, when, and their stars (NO_VALUE where the version
        kept none), oldest first; empty for an unknown user."""
        index = self.user_rows.get(user_id)
        return (_NO_ROWS, _NO_ROWS, _NO_VALUES) if index is None else self.ratings.ratings_at(index)

    def history_ids(self, rows: np.ndarray) -> list[str]:
        """The query model's history input from movie rows oldest first: the latest ids, newest first."""
        return [self.movies[row]["movie_id"] for row in newest_first(rows, self.history_length).tolist()]

    def history_at(
        self, rows: np.ndarray, times: np.ndarray, values: np.ndarray, bound: int
    ) -> tuple[list[str], list[float]]:
        """The query model's history inputs from a user's ratings oldest first: the latest movie ids known
        below `bound` (contract.user_ratings.known_bound) and read as taste (`read_as_taste`: not the ones
        rated below the version's history_min_rating), newest first, and their stars."""
        known = known_at(times, bound) & read_as_taste(values, self.manifest.query.history_min_rating)
        return self.history_ids(rows[known]), newest_first(values[known], self.history_length).tolist()

    def rating_part(
        self, rows: np.ndarray, times: np.ndarray, values: np.ndarray, bound: int, user_row: int | None = None
    ) -> np.ndarray | None:
        """The user's part of the rating term from their ratings (movie rows, times and stars, oldest first)
        known below `bound`, dislikes included; None for a version without the term.

        `user_row`: the user's position in `ratings` when these are exactly their ratings in the version
        (nothing stored since). Once all of them are known, the part folded in at load is returned.
        """
        if self.rating is None:
            return None
        known = known_at(times, bound)
        if user_row is not None and self.rating_parts is not None and known.all():
            return self.rating_parts[user_row]
        return self.rating.user_part(rows[known], values[known])

    def served_queries(self, queries: np.ndarray, rating_parts: list[np.ndarray | None]) -> np.ndarray:
        """float32 [batch, d (+ rating width)]: the tower's queries as the searcher takes them, each followed
        by its user's rating part (None: a user with no stars known, ranked by the movies' biases)."""
        if self.rating is None:
            return queries
        none = self.rating.no_ratings
        parts = np.array([none if part is None else part for part in rating_parts], dtype=np.float64)
        return self.rating.served_queries(queries, parts.reshape(len(rating_parts), self.rating.width))

    def now_key(self, user_row: int | None, timestamp: int, rating_times: np.ndarray, bound: int) -> int | None:
        """The key under which this request's served query is the same at every moment from now on: the known
        user's row when `timestamp` is past the model's clamp range and every one of their ratings in the
        version (`rating_times`, oldest first) is known below `bound`; else None. The caller says that nothing
        else changes the query (no rating stored since the version, no history in the request)."""
        if user_row is None or timestamp < self.manifest.query.timestamp_max:
            return None
        return user_row if len(rating_times) == 0 or rating_times[-1] < bound else None

    def at_now(self, key: int) -> AtNow | None:
        """What is kept under `key` (`now_key`), if a request has kept it."""
        return self._at_now.get(key)

    def keep_at_now(self, key: int, state: UserState, most: int) -> None:
        """Start keeping what requests compute for `key` (`now_key`) from the user's `state`, dropping the
        oldest kept beyond `most` users (0: keep nothing)."""
        if most <= 0:
            return
        while len(self._at_now) >= most:
            del self._at_now[next(iter(self._at_now))]
        self._at_now[key] = AtNow(state)

    @property
    def rerank_pool(self) -> int:
        """How many of a query's best allowed movies `rerank` re-orders (0: none)."""
        return 0 if self.rating is None else self.rating.rerank_pool

    def rerank(self, served_query: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A query's best allowed movies (rows and scores, best first) as the rating term re-orders them."""
        if self.rating is None:
            return rows, scores
        return self.rating.rerank(served_query, rows, scores, self._term_columns)

    def popular_rerank(self, rating_part: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        """A popularity answer's movie rows (most popular first) as the rating term re-orders them for a user
        with ratings but no history (only dislikes): those they are predicted to dislike come last in the pool."""
        if self.rating is None or rating_part is None:
            return rows
        return self.rating.popular_rerank(rating_part, rows, self._term_columns)

    def embed(
        self,
        user_ids: list[str],
        timestamps: list[int],
        histories: list[list[str]],
        ratings: list[list[float]] | None = None,
    ) -> np.ndarray:
        """The query tower on the whole batch: float32 [batch, d].

        Args:
            histories: per query, movie ids newest first; cut or padded with "" to the model's length.
            ratings: per query, the stars of those movies (NO_VALUE where unknown); None: all unknown.
        """
        if self.query_tower is not None:
            return self.query_tower(user_ids, timestamps, histories, ratings)
        return saved_model_embed(self.query_fn, self.manifest.query, user_ids, timestamps, histories, ratings)

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """One batched ScaNN search of served queries (`served_queries`): movie rows and dot-product scores
        [batch, depth], best first.

        Short answers are padded by ScaNN with NaN scores; callers drop non-finite scores.
        """
        depth = min(depth, self.num_movies)
        rows, scores = self.searcher.search_batched(queries, **self.search_plan.params(depth))
        return rows.astype(np.int64), scores


def load_query_fn(path: Path, query: QueryInfo) -> tuple[Any, Any]:
    """The query SavedModel and its serving signature, checked to take the inputs the manifest says."""
    model = tf.saved_model.load(str(path))
    if "serving_default" not in model.signatures:
        raise ValueError("query_model has no 'serving_default' signature")
    fn = model.signatures["serving_default"]
    inputs = set(fn.structured_input_signature[1])
    expected = {"user_id", "timestamp", *query_inputs(query)}
    if inputs != expected:
        raise ValueError(f"query_model signature takes {sorted(inputs)}, the manifest says {sorted(expected)}")
    return model, fn


def query_inputs(query: QueryInfo) -> list[str]:
    """The history inputs a version's query SavedModel takes, besides user_id and timestamp."""
    return [*(["history"] if query.history_length else []), *(["history_rating"] if query.history_ratings else [])]


def saved_model_embed(
    fn: Any,
    query: QueryInfo,
    user_ids: list[str],
    timestamps: list[int],
    histories: list[list[str]],
    ratings: list[list[float]] | None = None,
) -> np.ndarray:
    """One call of the query SavedModel's signature: float32 [batch, d]; histories cut or padded with "",
    their stars with NO_VALUE."""
    inputs = tower_inputs(query.history_length, query.history_ratings, user_ids, timestamps, histories, ratings)
    return call_query_fn(fn, inputs)


def call_query_fn(fn: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The query SavedModel's signature on `tower_inputs` arrays: float32 [batch, d]."""
    return fn(**{name: tf.constant(value) for name, value in inputs.items()})["embedding"].numpy()


def _genre_masks(movies: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for row, movie in enumerate(movies):
        for genre in movie["genres"]:
            masks.setdefault(genre, np.zeros(len(movies), dtype=bool))[row] = True
    return masks


def _read(path: Path, manifest: Manifest) -> ModelVersion:
    movies = read_movies(path)
    embeddings = read_candidate_embeddings(path, len(movies), manifest.embedding_dim)
    content = read_content_embeddings(path, len(movies), manifest.embedding_dim - manifest.item_item_dim)
    popularity = read_popularity(path, len(movies))
    seen = read_seen(path, len(movies))
    if manifest.index.num_movies != len(movies):
        raise VersionError(f"the index covers {manifest.index.num_movies} movies, the catalogue {len(movies)}")
    # load_searcher's compatibility shim would write into the version directory; the contract has the file.
    searcher = scann_ops_pybind.load_searcher(str(path / layout.SCANN), assets_backcompat_shim=False)
    rating = read_rating_model(path, manifest, len(movies))
    tower = read_query_weights(path)
    model = fn = None
    if tower is None:
        model, fn = load_query_fn(path / layout.QUERY_MODEL, manifest.query)
    elif (tower.history_length, tower.dim) != (manifest.query.history_length, manifest.embedding_dim):
        raise VersionError(
            f"{layout.QUERY_WEIGHTS} takes history {tower.history_length} and returns {tower.dim} dimensions; the "
            f"manifest says {manifest.query.history_length} and {manifest.embedding_dim}"
        )
    return ModelVersion(
        name=path.name,
        manifest=manifest,
        movies=movies,
        row_of_movie={m["movie_id"]: row for row, m in enumerate(movies)},
        genre_masks=_genre_masks(movies),
        ratings=seen,
        user_rows={str(u): i for i, u in enumerate(seen.user_ids.tolist())},
        popularity=popularity,
        candidate_embeddings=embeddings,
        content_embeddings=content,
        searcher=searcher,
        search_plan=SearchPlan.from_index(manifest.index),
        query_tower=tower,
        query_model=model,
        query_fn=fn,
        rating=rating,
        rating_parts=None if rating is None else rating.user_parts(seen, seen.indptr[:-1], seen.indptr[1:]),
    )


def check_query_tower(
    version: ModelVersion, path: Path, tolerance: float = MIRROR_TOLERANCE, timeout: float = 300
) -> None:
    """Prove the NumPy query tower equals the version's SavedModel before it serves a single query.

    Probe queries cover every branch (known, unknown and blank users; timestamps around the clamp range, on
    bucket edges and at now; empty, short, full and over-long histories with unknown movies). The SavedModel
    answers them in a child process (service/tower_check.py), so its load never holds this process's GIL.

    Raises:
        ValueError: the SavedModel cannot answer, or the two disagree by more than `tolerance` (relative to
            the largest embedding value).
    """
    tower = version.query_tower
    if tower is None:
        return
    known = [movie["movie_id"] for movie in version.movies[:50]]
    users, timestamps, histories, ratings = probe_queries(tower.arrays, known, int(time.time()))
    query = version.manifest.query
    with tempfile.TemporaryDirectory(prefix="tower-check-") as scratch:
        probes, out = Path(scratch) / "probes.npz", Path(scratch) / "embeddings.npy"
        inputs = tower_inputs(query.history_length, query.history_ratings, users, timestamps, histories, ratings)
        np.savez(probes, query=np.array(query.model_dump_json()), **inputs)  # type: ignore[arg-type]
        command = [sys.executable, "-m", "service.tower_check", str(path / layout.QUERY_MODEL), str(probes), str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ValueError(f"{layout.QUERY_MODEL} did not answer the probe queries within {timeout} s") from None
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            raise ValueError(f"{layout.QUERY_MODEL} cannot answer the probe queries: {last[0]}")
        expected = np.load(out, allow_pickle=False)
    difference = max_difference(expected, tower(users, timestamps, histories, ratings))
    if not difference <= tolerance:
        raise ValueError(
            f"{layout.QUERY_WEIGHTS} disagrees with {layout.QUERY_MODEL} by {difference:.3g} (relative) on "
            f"{len(users)} probe queries, over the {tolerance} allowed"
        )


def warm_up(version: ModelVersion, max_batch: int, min_recall: float) -> None:
    """Run the query model and the search at the batch sizes serving will use, so no request pays tracing,
    and check on those queries that the index finds what brute force over the embeddings finds.

    Raises:
        ValueError: the query embeddings do not fit the candidate embeddings or are not finite, or the index
            recalls less than `min_recall` of the exact top-k (it was built over other embeddings).
    """
    users = [*list(version.user_rows)[: max(max_batch - 1, 0)], "__warm_up_unknown_user__"]
    some_movies = [movie["movie_id"] for movie in version.movies[:3]]
    for size in sorted({1, len(users)}):
        # Half at the data's end, half at now: serving asks at now, years past MovieLens.
        timestamps = [version.manifest.data.timestamp_max if i % 2 else int(time.time()) for i in range(size)]
        queries = version.embed(users[:size], timestamps, [some_movies[: i % 4] for i in range(size)])
        if queries.shape != (size, version.candidate_embeddings.shape[1]):
            raise ValueError(
                f"query_model returns {queries.shape} for {size} users; candidate embeddings are "
                f"{version.candidate_embeddings.shape}"
            )
        if not np.isfinite(queries).all():
            raise ValueError(f"query_model's embeddings of {size} warm-up queries are not all finite")
        k = min(10, version.num_movies)
        served = version.served_queries(queries, [None] * size)
        found, _ = version.search(served, k)
        recall = recall_at_k(found, version.served_candidates, served, k)
        if recall < min_recall:
            raise ValueError(
                f"the index finds {recall:.2f} of the exact top-{k} of {size} warm-up queries, under the "
                f"{min_recall} required (RECSYS_MIN_INDEX_RECALL): it does not match {layout.CANDIDATE_EMBEDDINGS}"
            )


def load_version(path: Path, max_batch: int, min_recall: float) -> ModelVersion:
    """Verify, load and warm up one version (blocking: seconds; run it off the event loop).

    Raises:
        VersionRejectedError: for anything wrong with the directory, with the reason.
    """
    started = time.perf_counter()
    try:
        manifest = verified_manifest(path)
    except VersionError as e:
        raise VersionRejectedError(str(e)) from e
    try:
        version = _read(path, manifest)
        check_query_tower(version, path)
        warm_up(version, max_batch, min_recall)
    except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError, RuntimeError) as e:
        raise VersionRejectedError(f"version {path.name!r} failed to load: {e}") from e
    log.info("loaded version %s in %.2f s", path.name, time.perf_counter() - started)
    return version
