"""Fitting one two-tower model on a fold, and its towers' embeddings of movies and of held-out queries."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from contract.rating_model import RatingModel, served_queries
from contract.user_ratings import history_movie_ids, known_bound
from training.config import TrainConfig
from training.dataset import Vocabularies, build_vocabularies, candidates_dataset, ratings_dataset
from training.evaluate import protocol_tables
from training.folds import Fold, PreparedData
from training.item_item_prior import item_item_prior
from training.model import build_model
from training.progress import EpochProgress
from training.rating_model import fit_rating_model

A_AND_B = {"A": False, "B": True}  # protocol name -> whether it excludes the user's known movies


@dataclass(frozen=True)
class TrainedRun:
    """One fitted model: its towers and, when it was scored, its query embeddings of the held-out ratings."""

    config: TrainConfig
    vocab: Vocabularies  # what the towers adapted to, the time range they clamp to included
    query_tower: tf.keras.Model
    candidate_tower: tf.keras.Model
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    test_query_embeddings: np.ndarray | None  # float32 [test_size, d]
    training_log: dict[str, Any]  # per-epoch loss, the held-out curve, timings (training_history.json)
    rating_model: RatingModel | None = None  # the rating term fit on the fold's stars (None: rating_weight 0)


def query_inputs(
    frame: pd.DataFrame,
    histories: np.ndarray | None,
    movie_ids: np.ndarray,
    ratings: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The query tower's inputs for rows of `frame`: user_id and timestamp strings/ints, history movie ids
    and, for a tower that reads them, their stars."""
    inputs = {
        "user_id": frame["user_id"].to_numpy(np.int64).astype(str),
        "timestamp": frame["timestamp"].to_numpy(np.int64),
    }
    if histories is not None:
        inputs["history"] = history_movie_ids(histories, movie_ids)
    if ratings is not None:
        inputs["history_rating"] = ratings.astype(np.float32)
    return inputs


def fit_vocabularies(config: TrainConfig, fold: Fold, targets: pd.DataFrame | None = None) -> Vocabularies:
    """What the towers of `config` adapt to on `fold`: `build_vocabularies`, and with `item_item_prior` the
    EASE prior of the fold's training ratings (those of at least `item_item_prior_min_rating` stars)."""
    vocab = build_vocabularies(fold.data, fold.train, targets)
    if not config.query_spec.item_item_prior:  # none configured, or no history to pool it
        return vocab
    prior = item_item_prior(
        fold.known.read_as_history(config.item_item_prior_min_rating),
        len(vocab.movie_ids),
        config.item_item_prior,
        config.item_item_prior_lambda,
        config.item_item_prior_movies,
        config.seed,
        config.item_item_prior_popularity,
    )
    return dataclasses.replace(vocab, item_item_prior=prior)


def fit(
    config: TrainConfig, fold: Fold, progress: bool = True, label: str | None = None, curve: bool = False
) -> TrainedRun:
    """Trains one two-tower model on `fold.train`; with `curve`, scores A and B every `eval_every` epochs."""
    tf.keras.utils.set_random_seed(config.seed)
    # Every rating is history; only those with enough stars are targets (positive_min_rating).
    targets = fold.train
    if config.positive_min_rating > 0:
        targets = fold.train[fold.train["rating"] >= config.positive_min_rating].reset_index(drop=True)
    vocab = fit_vocabularies(config, fold, targets)
    train_ds = ratings_dataset(
        fold.data,
        targets,
        vocab,
        config.batch_size,
        known=fold.known.read_as_history(config.history_min_rating),
        history_length=config.history_length,
        history_ratings=config.query_spec.history_ratings,
        shuffle_seed=config.seed,
        user_dropout=config.user_dropout,
        movie_dropout=config.movie_dropout,
        passes=None,
    )
    model, query_tower, candidate_tower = build_model(vocab, config)
    movies_ds = candidates_dataset(vocab, config.eval_batch_size).cache()
    queries_ds = None
    if fold.test is not None:
        ratings = fold.test_history_ratings if config.query_spec.history_ratings else None
        inputs = query_inputs(fold.test, fold.test_histories, vocab.movie_ids, ratings)
        queries_ds = tf.data.Dataset.from_tensor_slices(inputs).batch(config.eval_batch_size).cache()

    def embed() -> tuple[np.ndarray, np.ndarray | None]:
        candidates = embed_batches(candidate_tower, movies_ds)
        return candidates, None if queries_ds is None else embed_batches(query_tower, queries_ds)

    def evaluate_now() -> dict[str, dict[str, float]]:
        candidates, queries = embed()
        assert fold.held_out is not None and queries is not None
        return protocol_tables(queries, candidates, fold.popularity, fold.held_out, A_AND_B, config.eval_score_chunk)

    evaluate_at = set()
    if curve and fold.test is not None:
        evaluate_at = {*range(config.eval_every, config.epochs + 1, config.eval_every), config.epochs}
    bar = EpochProgress(config.epochs, label or config.label, evaluate_now, evaluate_at, enabled=progress)
    started, cpu_started = time.perf_counter(), time.process_time()
    # One iterator for the whole fit, an epoch being one shuffled pass: Keras otherwise makes a new iterator
    # every epoch, and tearing the old one down stalled about a second an epoch on 2 cores (py-spy).
    steps = math.ceil(len(targets) / config.batch_size)
    model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps, verbose=0, callbacks=[bar])
    seconds = time.perf_counter() - started
    candidate_embeddings, query_embeddings = embed()
    rating_started = time.perf_counter()
    rating_model = fit_rating_model(
        fold.known,
        candidate_embeddings,
        config.rating_factors,
        config.rating_reg,
        config.rating_weight,
        config.seed,
        config.rating_demote,
        config.rating_user_bias_penalty,
    )
    training_log = dict(
        bar.training_log,
        train_seconds=seconds,
        train_cpu_seconds=time.process_time() - cpu_started,
        seconds_per_epoch=seconds / config.epochs,
        examples_per_second=len(targets) * config.epochs / seconds,
        rating_model_seconds=time.perf_counter() - rating_started,
    )
    return TrainedRun(
        config, vocab, query_tower, candidate_tower, candidate_embeddings, query_embeddings, training_log, rating_model
    )


def index_queries(run: TrainedRun, prepared: PreparedData) -> np.ndarray:
    """Real served queries of the served model to measure its index's recall on: the latest ratings' users,
    with their rating term's user part where the model has one (contract/rating_model.py)."""
    config, serving = run.config, prepared.everything
    frame = serving.train.sort_values("timestamp").tail(config.index_recall_queries)
    users, times = frame["user_id"].to_numpy(np.int64), frame["timestamp"].to_numpy(np.int64)
    bounds = known_bound(times, at_now=False)
    histories = ratings = None
    if config.history_length:
        taste = serving.known.read_as_history(config.history_min_rating)
        histories, ratings = taste.rated_histories(users, bounds, config.history_length)
    movie_ids = prepared.data.movies["movie_id"].to_numpy().astype(str)
    inputs = query_inputs(frame, histories, movie_ids, ratings if config.query_spec.history_ratings else None)
    queries = embed_batches(run.query_tower, tf.data.Dataset.from_tensor_slices(inputs).batch(config.eval_batch_size))
    if run.rating_model is None:
        return queries
    starts, ends = serving.known.spans_before(users, bounds)
    return served_queries(queries, run.rating_model, run.rating_model.user_parts(serving.known, starts, ends))


def embed_batches(tower: tf.keras.Model, batches: tf.data.Dataset) -> np.ndarray:
    """float32 [n, d]: the tower on every batch, in order, on this process alone.

    Not `predict`: under a multi-worker strategy it would shard the batches across workers.
    """
    parts = [tower({name: batch[name] for name in tower.input_names}, training=False).numpy() for batch in batches]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, tower.output_shape[-1]), np.float32)
