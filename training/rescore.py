"""Scores an exported version under protocol T on held-out ratings: the gate's like-for-like comparison.

The retrainer holds out the ratings stored since the current version's cutoff, which neither the current
version nor the candidate's evaluated model trained on, and scores the current version on them exactly as
the server would answer: its own query model, known users, histories and popularity fallback.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import scann  # noqa: F401  # a SavedModel holding ScaNN ops loads only once they are registered
import tensorflow as tf

from contract import manifest as layout
from contract.contents import read_candidate_embeddings, read_movies, read_popularity, read_rating_model, read_seen
from contract.manifest import Table, read_manifest
from contract.user_ratings import history_movie_ids, known_bound
from training.evaluate import HeldOutQueries, accuracy_table, model_ranks, served_vectors


def score_exported(
    version_dir: Path,
    held_out: HeldOutQueries,
    users: np.ndarray,
    timestamps: np.ndarray,
    movie_ids: np.ndarray,
    batch_size: int,
) -> Table:
    """Protocol-T table of an exported version on `held_out` (queries: int64 user ids at their timestamps).

    `held_out.known` gives every rating before each query (the histories and the exclusions) as rows of the
    catalogue `movie_ids`; whom the version knows, and so who falls back to popularity, comes from the
    version's own seen.npz.

    A version whose catalogue lacks movies of `movie_ids` (added to the catalogue store since it was trained)
    is scored as it would serve: it never answers those.

    Raises:
        ValueError: the version has movies `movie_ids` lacks (its rows would mean other movies).
    """
    manifest = read_manifest(version_dir)
    movies = read_movies(version_dir)
    candidates = read_candidate_embeddings(version_dir, len(movies), manifest.embedding_dim)
    rating_model = read_rating_model(version_dir, manifest, len(movies))
    popularity = read_popularity(version_dir, len(movies))
    known = set(read_seen(version_dir, len(movies)).user_ids.tolist())
    unanswerable = None
    if [m["movie_id"] for m in movies] != movie_ids.tolist():
        rows, candidates, popularity, unanswerable = _in_catalogue(
            version_dir.name, movies, candidates, popularity, movie_ids
        )
        rating_model = rating_model.moved(rows, len(movie_ids)) if rating_model is not None else None
    length = manifest.query.history_length
    taste = held_out.known.read_as_history(manifest.query.history_min_rating)  # what its histories read
    taste_start, taste_end = taste.spans_before(users, known_bound(timestamps, at_now=False))
    fallback = ~np.isin(users.astype(str), list(known)) & (taste_end == taste_start)
    rescored = dataclasses.replace(held_out, fallback=fallback)

    serve = tf.saved_model.load(str(version_dir / layout.QUERY_MODEL)).signatures["serving_default"]
    queries = []
    for lo in range(0, len(users), batch_size):
        hi = min(lo + batch_size, len(users))
        inputs = {
            "user_id": tf.constant(users[lo:hi].astype(str)),
            "timestamp": tf.constant(timestamps[lo:hi], dtype=tf.int64),
        }
        if length:
            bounds = known_bound(timestamps[lo:hi], at_now=False)
            rows, ratings = taste.rated_histories(users[lo:hi], bounds, length)
            inputs["history"] = tf.constant(history_movie_ids(rows, movie_ids))
            if manifest.query.history_ratings:
                inputs["history_rating"] = tf.constant(ratings, tf.float32)
        queries.append(serve(**inputs)["embedding"].numpy())
    embeddings = np.concatenate(queries) if queries else np.zeros((0, candidates.shape[1]), np.float32)
    embeddings, candidates = served_vectors(rating_model, embeddings, candidates, rescored)
    ranks = model_ranks(
        embeddings, candidates, popularity, rescored, exclude=True, unanswerable=unanswerable, rating=rating_model
    )
    return accuracy_table(ranks)


def _in_catalogue(
    name: str, movies: list[dict[str, Any]], candidates: np.ndarray, popularity: np.ndarray, movie_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the version's movies are in the larger catalogue `movie_ids`, its candidates and popularity as
    rows of it, and which rows of it the version cannot answer.

    Raises:
        ValueError: the version has a movie `movie_ids` lacks.
    """
    position = {movie_id: row for row, movie_id in enumerate(movie_ids.tolist())}
    missing = [m["movie_id"] for m in movies if m["movie_id"] not in position]
    if missing:
        raise ValueError(f"{name} has movies this catalogue lacks ({missing[:5]}): it cannot be scored on its ratings")
    rows = np.array([position[m["movie_id"]] for m in movies], dtype=np.int64)
    placed = np.zeros((len(movie_ids), candidates.shape[1]), dtype=np.float32)
    placed[rows] = candidates
    unanswerable = np.ones(len(movie_ids), dtype=bool)
    unanswerable[rows] = False
    ranked = np.concatenate([rows[popularity], np.flatnonzero(unanswerable)])  # the rest after every movie it has
    return rows, placed, ranked, unanswerable
