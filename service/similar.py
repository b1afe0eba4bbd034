"""Similar movies: the k movies nearest one movie by embedding cosine blended with item-kNN and genre overlap,
genres optional.

Why this definition (benchmarks/similar_movies.py): ranked by the dot product of the candidate embeddings, a
movie's norm (its popularity) decided, and a few popular movies headed nearly every list. The score is
  EMBEDDING_WEIGHT x cosine of the two candidate embeddings
  + (1 - EMBEDDING_WEIGHT) x item-kNN: co-ratings / sqrt(raters of one x raters of the other + 1)
  + GENRE_WEIGHT x the Jaccard overlap of the two movies' genres
over the version's ratings (seen.npz, each user's distinct movies; the stars do not enter). On what users
rated next the first two beat item-kNN alone and every embedding-only definition, and no movie heads more
than 5% of the catalogue's lists. But the lists read as "popular with the same people" (Scream listed Liar
Liar, Contact and Air Force One; The Godfather, Star Wars before Part II): the overlap of genres brings a
film's own kind forward (Godfather: Part II first, Scream 2 into Scream's five) for a little of that measure.
A movie nobody rated yet is ranked by its embedding alone, and wherever it meets
another movie the two meet by their content, read alike: the candidate tower reads such a movie's id as the
one unknown id, so its item-to-item columns (manifest.item_item_dim) are a vector every new movie shares and
its other columns also carry the unknown id's part. Compared with known movies' own embeddings, new movies
came out each other's nearest. So each movie's content is also read with its id blanked
(content_embeddings.npy, written by training; older versions: the columns before item_item_dim) and a
movie nobody rated is compared on that (benchmarks/item_cold_start.py).
"""

import dataclasses
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract.user_ratings import UserRatings, span_pairs
from service.artifacts import ModelVersion
from service.config import Settings
from service.errors import UnknownMovieError
from service.recommender import _genre_mask, _items, check_k

EMBEDDING_WEIGHT = 0.5  # the embedding cosine's share of the score, chosen on validation ratings
# Weight of the genre overlap (Jaccard, 0-1) added to that blend, chosen on validation ratings
# (benchmarks/similar_movies.py: the most title siblings listed among the weights that keep item-kNN's hit@10).
GENRE_WEIGHT = 0.1
# A movie's co-ratings are counted over at most this many of its raters, taken evenly and scaled up, so one
# request stays bounded in any catalogue; no ML-100K or ML-1M movie has that many raters.
MAX_RATERS = 20_000
# A movie nobody rated borrows the item-kNN rows of this many rated movies nearest it by content (as an added
# movie borrows EASE prior rows: service/borrowed_prior.py).
LENDERS = 10
_NORM_FLOOR = np.float32(1e-12)  # a zero vector stays zero instead of dividing by zero


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 [n, d]: each row scaled to unit length (a zero row stays zero), so dot products are cosines."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.maximum(np.einsum("ij,ij->i", vectors, vectors), _NORM_FLOOR))
    return np.ascontiguousarray(vectors / norms[:, None])


def genre_matrix(movies: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """float32 [n, genres]: 1 where each movie (movies.json's shape) has each genre of the catalogue's."""
    names = sorted({genre for movie in movies for genre in movie["genres"]})
    column = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(movies), len(names)), dtype=np.float32)
    for row, movie in enumerate(movies):
        matrix[row, [column[genre] for genre in movie["genres"]]] = 1.0
    return matrix


def _content_columns(embeddings: np.ndarray, item_item_dim: int) -> np.ndarray:
    """float32 [n, d - item_item_dim]: the columns the candidate tower computes from the movie's content."""
    return embeddings[:, : embeddings.shape[1] - item_item_dim]


def _centred(rows: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """`rows` less the catalogue's mean content row, at unit length. Uncentred, every movie's content reads
    alike (cosines of 0.97-0.99 on ML-100K: a part every title shares), and a new movie's nearest were
    decided by what was left of the noise."""
    return unit_rows(np.asarray(rows, dtype=np.float32) - mean)


def _content(
    unit: np.ndarray, embeddings: np.ndarray, item_item_dim: int, content: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The content rows, centred at unit length, and the mean they were centred on: `content` where the version
    has it, else the embeddings' columns before the item-to-item ones, else (neither) `unit` itself, shared
    rather than copied, and no mean."""
    raw = content if content is not None else _content_columns(embeddings, item_item_dim) if item_item_dim else None
    if raw is None:
        return unit, None
    mean = np.asarray(raw, dtype=np.float32).mean(axis=0)
    return _centred(raw, mean), mean


@dataclass(frozen=True)
class SimilarIndex:
    """What one version's similar movies are computed from; exact per request, O(movies x d + co-ratings),
    never a movies x movies matrix."""

    unit: np.ndarray  # float32 [num_movies, d]: the candidate embeddings at unit length
    content: np.ndarray  # float32 [num_movies, d - item_item_dim]: each movie's content, its id blanked, centred, unit
    user_indptr: np.ndarray  # int64 [num_users + 1]: user i's distinct movies are user_movies[indptr[i]:indptr[i+1]]
    user_movies: np.ndarray  # int32 [pairs]
    movie_indptr: np.ndarray  # int64 [num_movies + 1]: movie j's raters are movie_users[indptr[j]:indptr[j+1]]
    movie_users: np.ndarray  # int32 [pairs]: user positions
    raters: np.ndarray  # float32 [num_movies]: distinct raters of each movie
    content_mean: np.ndarray | None = None  # float32 [d - item_item_dim]: what `content` was centred on (None: not)
    genres: np.ndarray | None = None  # float32 [num_movies, genres]: genre_matrix (None: no genre term)
    genre_weight: float = GENRE_WEIGHT
    rated: np.ndarray = field(init=False)  # int64: rows of the movies someone rated, ascending
    unrated: np.ndarray = field(init=False)  # int64: rows of the movies nobody rated, ascending
    genre_counts: np.ndarray | None = field(init=False)  # float32 [num_movies]: each movie's number of genres

    def __post_init__(self) -> None:
        # Once per index, not per request.
        object.__setattr__(self, "rated", np.flatnonzero(self.raters > 0))
        object.__setattr__(self, "unrated", np.flatnonzero(self.raters == 0))
        object.__setattr__(self, "genre_counts", None if self.genres is None else self.genres.sum(axis=1))

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ratings: UserRatings,
        item_item_dim: int = 0,
        content: np.ndarray | None = None,
        genres: np.ndarray | None = None,
    ) -> "SimilarIndex":
        """From a version's candidate embeddings (their last `item_item_dim` columns the item-to-item channel),
        its content embeddings (None: the columns before those), ratings and genre_matrix (None: no genre
        term): one stable sort of the ratings by movie."""
        num_movies, num_users = len(embeddings), len(ratings.user_ids)
        users = np.repeat(np.arange(num_users, dtype=np.int32), np.diff(ratings.indptr))
        movies = ratings.movie_rows.astype(np.int32)
        by_movie = np.argsort(movies, kind="stable")  # each movie's raters in user order, as the ratings are
        movie_sorted, user_sorted = movies[by_movie], users[by_movie]
        # A re-rated movie counts once (item-kNN reads who rated what): drop each repeat of a (movie, user).
        repeat = np.zeros(len(movies), dtype=bool)
        repeat[1:] = (movie_sorted[1:] == movie_sorted[:-1]) & (user_sorted[1:] == user_sorted[:-1])
        kept = np.ones(len(movies), dtype=bool)
        kept[by_movie[repeat]] = False
        raters = np.bincount(movie_sorted[~repeat], minlength=num_movies)
        unit = unit_rows(embeddings)
        content_rows, content_mean = _content(unit, embeddings, item_item_dim, content)
        return cls(
            unit=unit,
            content=content_rows,
            content_mean=content_mean,
            user_indptr=np.concatenate([[0], np.cumsum(np.bincount(users[kept], minlength=num_users))]),
            user_movies=movies[kept],
            movie_indptr=np.concatenate([[0], np.cumsum(raters)]),
            movie_users=user_sorted[~repeat],
            raters=raters.astype(np.float32),
            genres=genres,
        )

    def co_ratings(self, row: int) -> np.ndarray:
        """float32 [num_movies]: how many users rated both movie `row` and each movie (estimated from an even
        sample of MAX_RATERS raters for a movie with more)."""
        users = self.movie_users[self.movie_indptr[row] : self.movie_indptr[row + 1]]
        sampled = users[:: math.ceil(len(users) / MAX_RATERS)] if len(users) > MAX_RATERS else users
        _, movies = span_pairs(self.user_movies, self.user_indptr[sampled], self.user_indptr[sampled + 1])
        counts = np.bincount(movies, minlength=len(self.raters)).astype(np.float32)
        return counts * np.float32(len(users) / len(sampled)) if len(sampled) < len(users) else counts

    def cosines(self, row: int) -> np.ndarray:
        """float32 [num_movies]: every movie's embedding cosine with movie `row`: of their content embeddings
        where either of the two has no rater, of the whole embeddings where both have."""
        if self.raters[row] == 0:
            return self.content @ self.content[row]
        cosines = self.unit @ self.unit[row]
        if len(self.unrated):
            cosines[self.unrated] = self.content[self.unrated] @ self.content[row]
        return cosines

    def knn(self, row: int) -> np.ndarray:
        """float32 [num_movies]: every movie's item-kNN similarity to movie `row` (zeros for a movie nobody rated)."""
        return self.co_ratings(row) / np.sqrt(self.raters[row] * self.raters + np.float32(1.0))

    def borrowed_knn(self, cosines: np.ndarray) -> np.ndarray:
        """float32 [num_movies]: for a movie nobody rated, whose content `cosines` with every movie are given, the
        item-kNN rows of the LENDERS rated movies nearest it by content, averaged with their (positive) cosines
        as weights: who watched what it reads like, it is presumed to share."""
        rated = self.rated
        out = np.zeros(len(self.raters), dtype=np.float32)
        if not len(rated):
            return out
        k = min(LENDERS, len(rated))
        lenders = rated[np.argpartition(-cosines[rated], k - 1)[:k]]
        weights = np.maximum(cosines[lenders], 0.0)
        if weights.sum() <= 0:
            return out
        for lender, weight in zip(lenders.tolist(), weights.tolist(), strict=True):
            out += np.float32(weight) * self.knn(lender)
        return out / np.float32(weights.sum())

    def genre_overlap(self, row: int) -> np.ndarray:
        """float32 [num_movies]: the Jaccard overlap of every movie's genres with movie `row`'s (0 where either
        has none, or the index has no genres)."""
        if self.genres is None or self.genre_counts is None:
            return np.zeros(len(self.raters), dtype=np.float32)
        shared = self.genres @ self.genres[row]
        union = self.genre_counts + self.genre_counts[row] - shared
        return shared / np.maximum(union, np.float32(1.0))

    def scores(self, row: int) -> np.ndarray:
        """float32 [num_movies]: every movie's similarity to movie `row` (its own entry included)."""
        cosines = self.cosines(row)
        knn = self.knn(row) if self.raters[row] > 0 else self.borrowed_knn(cosines)
        blend = np.float32(EMBEDDING_WEIGHT) * cosines + np.float32(1 - EMBEDDING_WEIGHT) * knn
        if self.genres is None or not self.genre_weight:
            return blend
        return blend + np.float32(self.genre_weight) * self.genre_overlap(row)


# One index per loaded version, dropped with the version (hot swap): the key is weak.
_indexes: "weakref.WeakKeyDictionary[ModelVersion, SimilarIndex]" = weakref.WeakKeyDictionary()


def prepare(version: ModelVersion) -> SimilarIndex:
    """The version's SimilarIndex, built on the first call (cheap on ML-100K, seconds at 25M ratings: so call it
    when the version loads, off the event loop)."""
    index = _indexes.get(version)
    if index is None:
        index = SimilarIndex.build(
            version.candidate_embeddings,
            version.ratings,
            version.manifest.item_item_dim,
            version.content_embeddings,
            genre_matrix(version.movies),
        )
        _indexes[version] = index
    return index


def extend(version: ModelVersion, base: ModelVersion) -> SimilarIndex:
    """`version`'s SimilarIndex from `base`'s, `version` being `base` with movies appended after its rows
    (service/live_version.py): nobody rated those in base's ratings, so only the embeddings grow. The tower
    read their ids as unknown, so their embeddings' content columns are their content embeddings. Genres are
    read afresh: a change may have given any movie new ones."""
    index = dataclasses.replace(prepare(base), genres=genre_matrix(version.movies))
    extra = version.candidate_embeddings[len(index.unit) :]
    if not len(extra):
        _indexes[version] = index
        return index
    unit = np.concatenate([index.unit, unit_rows(extra)])
    if index.content_mean is None:
        content = unit
    else:
        extra_content = _centred(_content_columns(extra, version.manifest.item_item_dim), index.content_mean)
        content = np.concatenate([index.content, extra_content])
    # The ratings' arrays, the content mean and the genres carry over; only what has a row per movie grows.
    extended = dataclasses.replace(
        index,
        unit=unit,
        content=content,
        movie_indptr=np.concatenate([index.movie_indptr, np.full(len(extra), index.movie_indptr[-1])]),
        raters=np.concatenate([index.raters, np.zeros(len(extra), dtype=np.float32)]),
    )
    _indexes[version] = extended
    return extended


def nearest(
    version: ModelVersion, row: int, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k movie rows most similar to movie `row` (itself left out) among the `allowed` ones (bool
    [num_movies], None: all) and their scores, best first; ties go to the lower row."""
    scores = prepare(version).scores(row)
    if allowed is not None:
        scores[~allowed] = -np.inf
    scores[row] = -np.inf
    depth = min(k, len(scores) - 1)
    if depth <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    candidates = np.argpartition(-scores, depth - 1)[:depth]
    candidates = candidates[np.lexsort((candidates, -scores[candidates]))]
    candidates = candidates[np.isfinite(scores[candidates])]
    return candidates.astype(np.int64), scores[candidates]


def similar(
    version: ModelVersion, movie_id: str, k: int, settings: Settings, genres: list[str] | None = None
) -> dict[str, Any]:
    """The k movies most similar to this one (itself left out), of any of `genres` when given, shaped like
    SimilarResponse.

    Raises:
        UnknownMovieError: the movie_id is not in the catalogue.
        InvalidRequestError: k above the maximum.
        NotInCatalogueError: a genre the version does not have.
    """
    check_k(k, settings.max_k)
    row = version.row_of_movie.get(movie_id)
    if row is None or not version.is_available(row):
        raise UnknownMovieError(
            f"movie_id {movie_id!r} is not in the catalogue of version {version.name} ({version.num_movies} movies)"
            + ("" if row is None else ": it is withdrawn (PATCH /movies/{movie_id} with available: true restores it)")
        )
    mask = _genre_mask(version, genres or [])
    rows, scores = nearest(version, row, k, version.all_movies() if mask is None else mask)
    return {**version.movies[row], "model_version": version.name, "items": _items(version, rows, scores)}
