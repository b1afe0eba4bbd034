"""Offline top-k accuracy of a model and of a most-popular baseline, under protocols A and B.

Protocol A is the TFRS tutorial's factorized top-k accuracy: a held-out (user, movie) pair is a hit at k
when fewer than k movies score strictly higher than the held-out movie. Protocol B first removes the
user's training movies from the ranking, which is what the service does before it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from training.dataset import SeenMovies

KS = (1, 5, 10, 50, 100)
Table = dict[str, float]


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, seen: SeenMovies | None = None, seen_positions: np.ndarray | None = None
) -> np.ndarray:
    """Number of movies scoring strictly above each row's target movie.

    Args:
        scores: float [batch, num_movies], modified in place when `seen` is given.
        targets: int [batch], the held-out movie's row per query.
        seen: per-user training movies to exclude (protocol B), with `seen_positions` int [batch]
            giving each query's user position in `seen` (-1 for none).
    Returns:
        int [batch] ranks (0 = the target is the best-scoring movie).
    """
    batch = np.arange(len(targets))
    positive = scores[batch, targets].copy()
    if seen is not None and seen_positions is not None:
        rows, cols = _seen_pairs(seen, seen_positions)
        scores[rows, cols] = -np.inf
        scores[batch, targets] = positive  # a re-rated training movie is still a valid target
    return (scores > positive[:, None]).sum(axis=1)


def _seen_pairs(seen: SeenMovies, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query row, movie row) for every training movie of every query's user, without a Python loop."""
    valid = positions >= 0
    safe = np.where(valid, positions, 0)
    starts = seen.indptr[safe]
    lengths = np.where(valid, seen.indptr[safe + 1] - starts, 0)
    rows = np.repeat(np.arange(len(positions)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, seen.movie_rows[np.repeat(starts, lengths) + offsets]


def accuracy_table(ranks: np.ndarray, ks: Iterable[int] = KS) -> Table:
    """{"top_k": share of held-out pairs whose target ranks below k}."""
    return {f"top_{k}": float(np.mean(ranks < k)) if len(ranks) else 0.0 for k in ks}


def evaluate_embeddings(
    query_embeddings: np.ndarray,
    candidate_embeddings: np.ndarray,
    targets: np.ndarray,
    user_ids: np.ndarray,
    seen: SeenMovies,
    chunk: int = 2048,
) -> dict[str, Table]:
    """Protocols A and B for a model, scoring by dot product in chunks (memory stays O(chunk x movies)).

    Args:
        query_embeddings: float32 [n, d], one per held-out rating.
        candidate_embeddings: float32 [num_movies, d].
        targets: int [n] movie rows; user_ids: int64 [n].
    """
    return _evaluate(lambda lo, hi: query_embeddings[lo:hi] @ candidate_embeddings.T, targets, user_ids, seen, chunk)


def evaluate_popularity(
    popularity: np.ndarray,
    num_movies: int,
    targets: np.ndarray,
    user_ids: np.ndarray,
    seen: SeenMovies,
    chunk: int = 2048,
) -> dict[str, Table]:
    """The same tables for recommending the most-rated training movies to everyone."""
    score = np.empty(num_movies, dtype=np.float32)
    score[popularity] = -np.arange(num_movies, dtype=np.float32)  # a strict order: no ties to flatter it
    return _evaluate(lambda lo, hi: np.tile(score, (hi - lo, 1)), targets, user_ids, seen, chunk)


def popularity_ranking(train_rows: np.ndarray, num_movies: int) -> np.ndarray:
    """Movie rows by training rating count, most rated first; ties broken by row for determinism."""
    counts = np.bincount(train_rows, minlength=num_movies)
    return np.lexsort((np.arange(num_movies), -counts)).astype(np.int32)


def _evaluate(
    score_chunk: Callable[[int, int], np.ndarray],
    targets: np.ndarray,
    user_ids: np.ndarray,
    seen: SeenMovies,
    chunk: int,
) -> dict[str, Table]:
    positions = seen.positions(user_ids)
    ranks_a, ranks_b = [], []
    for lo in range(0, len(targets), chunk):
        hi = min(lo + chunk, len(targets))
        scores = np.asarray(score_chunk(lo, hi), dtype=np.float32)
        ranks_a.append(target_ranks(scores, targets[lo:hi]))
        ranks_b.append(target_ranks(scores, targets[lo:hi], seen, positions[lo:hi]))
    empty = np.zeros(0, dtype=np.int64)
    return {
        "A": accuracy_table(np.concatenate(ranks_a) if ranks_a else empty),
        "B": accuracy_table(np.concatenate(ranks_b) if ranks_b else empty),
    }
