"""Offline top-k accuracy of a model and of a most-popular baseline, under protocols A, B and T.

A held-out (user, movie) rating is a hit at k when fewer than k movies rank above its movie: score strictly
higher, or the same on a lower row (the service's tie rule).
- A: the TFRS tutorial's factorized top-k over all movies (random split).
- B: A, with each user's training movies removed from the ranking first, as the service does (random split).
- T: temporal and sequential: the latest ratings held out; each is asked at its own time, with the user's
  history being every rating before it (earlier held-out ones too), and those movies removed.
In every protocol a query is answered as the service would: a user the model does not know and who has no
history gets the popularity ranking, everyone else the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from contract.manifest import Table
from contract.rating_model import RatingModel, served_candidates, served_queries
from contract.user_ratings import UserRatings, span_pairs

KS = (1, 5, 10, 50, 100)
LIKED, DISLIKED = 4.0, 2.0  # a held-out rating of at least LIKED stars says "liked", at most DISLIKED "disliked"
MAX_CHUNK_CELLS = 128 * 2**20  # scores held at once: 512 MB of float32 (2,048 queries x 65,536 movies)


@dataclass(frozen=True)
class HeldOutQueries:
    """The held-out ratings a protocol scores and, per rating, what the service would have known then."""

    targets: np.ndarray  # int [n], the held-out movie's row
    known: UserRatings  # the ratings the exclusions point into
    exclude_start: np.ndarray  # int64 [n]: movies known.movie_rows[start:end] are excluded (B and T)
    exclude_end: np.ndarray  # int64 [n]
    fallback: np.ndarray  # bool [n]: the service answers this query from the popularity ranking
    stars: np.ndarray | None = None  # float32 [n]: what each held-out rating said (None: not known)

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Demotion:
    """The server's re-ordering of its best hits (contract.rating_model.RatingModel.rerank) for one chunk of
    queries: its pool size, and each movie's demotion for the chunk's rows asked."""

    pool: int
    of_rows: Callable[[np.ndarray], np.ndarray]  # int [r] rows of the chunk -> float32 [r, num_movies]


def served_vectors(
    model: RatingModel | None, queries: np.ndarray, candidates: np.ndarray, held_out: HeldOutQueries
) -> tuple[np.ndarray, np.ndarray]:
    """The query and candidate vectors the service ranks by (contract/rating_model.py): with a rating term,
    each query's user part is folded in from every rating it knows (its exclusion span: for T every rating
    before its time, for A and B the user's training ratings), as the server folds in a user's ratings."""
    if model is None:
        return queries, candidates
    parts = model.user_parts(held_out.known, held_out.exclude_start, held_out.exclude_end)
    return served_queries(queries, model, parts), served_candidates(candidates, model)


def target_ranks(
    scores: np.ndarray,
    targets: np.ndarray,
    excluded: tuple[np.ndarray, np.ndarray] | None,
    demote: Demotion | None = None,
) -> np.ndarray:
    """Number of movies ranked above each row's target movie: scoring strictly above it, or the same with a
    lower row, as the service breaks ties (a degenerate query that scores every movie alike is no hit; with
    ties counted for the target it would be a hit at every k).

    Args:
        scores: float [batch, num_movies], modified in place when `excluded` is given.
        targets: int [batch], the held-out movie's row per query.
        excluded: (query row, movie row) pairs removed from the ranking first.
        demote: the best `demote.pool` movies of each row are re-ordered by score less their demotion, as the
            server re-ranks its best hits (contract.rating_model.RatingModel.rerank); the rest keep their ranks.
    Returns:
        int [batch] ranks (0 = the target is the best-scoring movie).
    """
    batch = np.arange(len(targets))
    positive = scores[batch, targets].copy()
    if excluded is not None:
        scores[excluded] = -np.inf
        scores[batch, targets] = positive  # a re-rated movie is still a valid target
    ranks = _ranks_above(scores, targets, positive)
    if demote is not None:
        ranks = _demoted_ranks(scores, targets, ranks, demote)
    return ranks


def _ranks_above(
    scores: np.ndarray, targets: np.ndarray, positive: np.ndarray, among: np.ndarray | None = None
) -> np.ndarray:
    """Movies scoring above each row's target (the same with a lower row counts as above); only those in
    `among` (bool, like scores) when given."""
    above = scores > positive[:, None]
    tied = scores == positive[:, None]
    if among is not None:
        above &= among
        tied &= among
    ranks = above.sum(axis=1)
    for row in np.flatnonzero(tied.sum(axis=1) > 1).tolist():  # rare: only these need the rows counted
        ranks[row] += int(np.count_nonzero(tied[row, : targets[row]]))
    return ranks


def _demoted_ranks(
    scores: np.ndarray,
    targets: np.ndarray,
    ranks: np.ndarray,
    demote: Demotion,
) -> np.ndarray:
    """`ranks` after the demote pool's re-ordering: a target outside the pool keeps its rank."""
    pool = min(demote.pool, scores.shape[1])  # a catalogue smaller than the pool is re-ordered whole
    inside = np.flatnonzero(ranks < pool)
    if len(inside) == 0:
        return ranks
    demotions = demote.of_rows(inside)
    chunk = scores[inside]
    floor = -np.partition(-chunk, pool - 1, axis=1)[:, pool - 1 : pool]  # the pool: the best `pool` scores
    rescored = chunk - demotions
    positive = rescored[np.arange(len(inside)), targets[inside]]
    ranks = ranks.copy()
    ranks[inside] = _ranks_above(rescored, targets[inside], positive, among=chunk >= floor)
    return ranks


def accuracy_table(ranks: np.ndarray, ks: Iterable[int] = KS) -> Table:
    """{"top_k": share of held-out ratings whose target ranks below k}."""
    return {f"top_{k}": float(np.mean(ranks < k)) if len(ranks) else 0.0 for k in ks}


def popularity_scores(popularity: np.ndarray) -> np.ndarray:
    """float32 [num_movies]: a strict order from a ranking (no ties to flatter the baseline)."""
    score = np.empty(len(popularity), dtype=np.float32)
    score[popularity] = -np.arange(len(popularity), dtype=np.float32)
    return score


def popularity_ranking(train_rows: np.ndarray, num_movies: int) -> np.ndarray:
    """Movie rows by training rating count, most rated first; ties broken by row for determinism."""
    counts = np.bincount(train_rows, minlength=num_movies)
    return np.lexsort((np.arange(num_movies), -counts)).astype(np.int32)


def model_ranks(
    queries: np.ndarray,
    candidates: np.ndarray,
    popularity: np.ndarray,
    held_out: HeldOutQueries,
    exclude: bool,
    chunk: int = 2048,
    unanswerable: np.ndarray | None = None,
    rating: RatingModel | None = None,
    popular_rerank: bool = True,
) -> np.ndarray:
    """Ranks of the held-out movies under the model as served (popularity for fallback queries).

    Args:
        queries: float32 [n, d] query embeddings, one per held-out rating; candidates: float32 [num_movies, d].
            With `rating`, the served vectors (`served_vectors`), whose best hits it re-orders as the server does.
        unanswerable: bool [num_movies], movies the scored model cannot answer (an older version that lacks
            movies added to the catalogue since): never ranked.
        popular_rerank: with `rating`, a fallback query's popularity answer is re-ordered as the server does
            for a user with only dislikes (RatingModel.popular_rerank); False leaves it as it is (a study).
    """
    fallback_scores = popularity_scores(popularity)

    def score(lo: int, hi: int) -> np.ndarray:
        scores = queries[lo:hi] @ candidates.T
        scores[held_out.fallback[lo:hi]] = fallback_scores
        if unanswerable is not None:
            scores[:, unanswerable] = -np.inf
        return scores

    def demote(lo: int, hi: int) -> Demotion | None:
        if rating is None or rating.rerank_pool == 0:
            return None

        def of_rows(rows: np.ndarray) -> np.ndarray:
            demotions = rating.demotions(queries[lo + rows], candidates)
            fallback = held_out.fallback[lo + rows]
            if fallback.any():  # a popularity answer: re-ordered as the server does, or (a study) not at all
                popular = queries[lo + rows[fallback]]
                demotions[fallback] = rating.popular_demotions(popular, candidates) if popular_rerank else 0.0
            return demotions

        return Demotion(rating.rerank_pool, of_rows)

    return _ranks(score, held_out, exclude, chunk, len(candidates), demote)


def baseline_ranks(popularity: np.ndarray, held_out: HeldOutQueries, exclude: bool, chunk: int = 2048) -> np.ndarray:
    """Ranks of the held-out movies when everyone gets the most-rated training movies."""
    scores = popularity_scores(popularity)
    return _ranks(lambda lo, hi: np.tile(scores, (hi - lo, 1)), held_out, exclude, chunk, len(popularity))


def _ranks(
    score: Callable[[int, int], np.ndarray],
    held_out: HeldOutQueries,
    exclude: bool,
    chunk: int,
    num_movies: int,
    demote: Callable[[int, int], Demotion | None] | None = None,
) -> np.ndarray:
    # A chunk of queries x every movie is one float32 matrix: fewer queries per chunk in a large catalogue.
    chunk = max(1, min(chunk, MAX_CHUNK_CELLS // max(num_movies, 1)))
    ranks = [np.zeros(0, dtype=np.int64)]
    for lo in range(0, len(held_out), chunk):
        hi = min(lo + chunk, len(held_out))
        excluded = None
        if exclude:
            start, end = held_out.exclude_start[lo:hi], held_out.exclude_end[lo:hi]
            excluded = span_pairs(held_out.known.movie_rows, start, end)
        demotion = demote(lo, hi) if demote is not None else None
        scores = np.asarray(score(lo, hi), dtype=np.float32)
        ranks.append(target_ranks(scores, held_out.targets[lo:hi], excluded, demotion))
    return np.concatenate(ranks)


def protocol_tables(
    queries: np.ndarray | None,
    candidates: np.ndarray,
    popularity: np.ndarray,
    held_out: HeldOutQueries,
    protocols: Mapping[str, bool],
    chunk: int = 2048,
    rating: RatingModel | None = None,
) -> dict[str, Table]:
    """{protocol: accuracy table} for each protocol name -> whether it excludes known movies: the model's
    (`queries` [n, d] against `candidates`, served vectors re-ordered by `rating` as `model_ranks` does), or
    with `queries` None the most-popular baseline's. A protocol that excludes (B, T) is also split by what the
    held-out rating said: `B_liked`, `B_disliked`, ..."""
    tables = {}
    for name, exclude in protocols.items():
        if queries is None:
            ranks = baseline_ranks(popularity, held_out, exclude, chunk)
        else:
            ranks = model_ranks(queries, candidates, popularity, held_out, exclude, chunk, rating=rating)
        tables.update(split_tables(name, ranks, held_out.stars if exclude else None))
    return tables


def split_tables(name: str, ranks: np.ndarray, stars: np.ndarray | None) -> dict[str, Table]:
    """The protocol's table over every held-out rating, and with `stars` also over the liked (>= LIKED stars)
    and the disliked (<= DISLIKED) ones: a model that listens ranks the first high and the second low."""
    tables = {name: accuracy_table(ranks)}
    if stars is not None:
        tables[f"{name}_liked"] = accuracy_table(ranks[stars >= LIKED])
        tables[f"{name}_disliked"] = accuracy_table(ranks[stars <= DISLIKED])
    return tables
