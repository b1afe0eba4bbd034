"""Orchestration, top to bottom: config -> data -> split -> fit -> evaluate -> export -> promote."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from training.config import TrainConfig
from training.data import MovieLens, load_movielens
from training.dataset import (
    SeenMovies,
    Split,
    Vocabularies,
    build_seen,
    build_vocabularies,
    candidates_dataset,
    movie_rows,
    ratings_dataset,
    split_ratings,
)
from training.evaluate import evaluate_embeddings, evaluate_popularity, popularity_ranking
from training.export import TrainedArtifacts, export_version
from training.model import build_model
from training.plot import validation_curve_png
from training.pointers import promote
from training.progress import EpochProgress

EVAL_BATCH = 4096


@dataclass(frozen=True)
class TrainedRun:
    """One fitted model with its offline evaluation, ready to export."""

    config: TrainConfig
    query_tower: tf.keras.Model
    candidate_tower: tf.keras.Model
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    test_query_embeddings: np.ndarray  # float32 [test_size, d]
    history: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class PreparedData:
    """The data side of a run, shared by every model trained on the same split."""

    data: MovieLens
    split: Split
    test: pd.DataFrame  # the (possibly subsampled) held-out ratings that are scored
    vocab: Vocabularies
    seen: SeenMovies
    popularity: np.ndarray


def prepare(config: TrainConfig, data_dir: Path) -> PreparedData:
    """Loads the data and fixes the split, so that several models can be compared on the same one."""
    data = load_movielens(data_dir, config.dataset)
    split = split_ratings(data.ratings, config.split, config.test_fraction, config.seed)
    test = split.test
    if len(test) > config.eval_max_queries:
        rows = np.random.default_rng(config.seed).choice(len(test), config.eval_max_queries, replace=False)
        test = test.iloc[np.sort(rows)].reset_index(drop=True)
    return PreparedData(
        data=data,
        split=split,
        test=test,
        vocab=build_vocabularies(data, split.train),
        seen=build_seen(data, split.train),
        popularity=popularity_ranking(movie_rows(data, split.train), len(data.movies)),
    )


def fit(config: TrainConfig, prepared: PreparedData, label: str | None = None, progress: bool = True) -> TrainedRun:
    """Trains one two-tower model and evaluates it (protocols A and B) against the most-popular baseline."""
    tf.keras.utils.set_random_seed(config.seed)
    data, vocab = prepared.data, prepared.vocab
    train_ds = ratings_dataset(data, prepared.split.train, vocab, config.batch_size, shuffle_seed=config.seed)
    test_ds = ratings_dataset(data, prepared.test, vocab, EVAL_BATCH).cache()
    model, query_tower, candidate_tower = build_model(vocab, config, candidates_dataset(vocab))

    movies_ds = candidates_dataset(vocab, 1024).cache()
    queries_ds = test_ds.map(lambda f: {"user_id": f["user_id"], "timestamp": f["timestamp"]}).cache()

    def embed() -> tuple[np.ndarray, np.ndarray]:
        candidates = candidate_tower.predict(movies_ds, verbose=0).astype(np.float32)
        return candidates, query_tower.predict(queries_ds, verbose=0).astype(np.float32)

    def validate() -> dict[str, dict[str, float]]:
        candidates, queries = embed()
        return evaluate(prepared, candidates, queries, config)["model"]

    validate_at = {*range(config.eval_every, config.epochs + 1, config.eval_every), config.epochs}
    label = label or f"layers={','.join(map(str, config.layers))}"
    bar = EpochProgress(config.epochs, label, validate, validate_at, enabled=progress)
    started = time.perf_counter()
    model.fit(train_ds, epochs=config.epochs, verbose=0, callbacks=[bar])
    seconds = time.perf_counter() - started

    candidate_embeddings, query_embeddings = embed()
    metrics = evaluate(prepared, candidate_embeddings, query_embeddings, config)
    history = dict(bar.history, train_seconds=seconds, seconds_per_epoch=seconds / config.epochs)
    return TrainedRun(config, query_tower, candidate_tower, candidate_embeddings, query_embeddings, history, metrics)


def evaluate(
    prepared: PreparedData, candidate_embeddings: np.ndarray, query_embeddings: np.ndarray, config: TrainConfig
) -> dict[str, Any]:
    """The manifest's metrics block: model and most-popular tables under protocols A and B."""
    targets = movie_rows(prepared.data, prepared.test)
    users = prepared.test["user_id"].to_numpy(dtype=np.int64)
    return {
        "model": evaluate_embeddings(query_embeddings, candidate_embeddings, targets, users, prepared.seen),
        "most_popular": evaluate_popularity(
            prepared.popularity, len(candidate_embeddings), targets, users, prepared.seen
        ),
        "split": config.split,
        "test_size": len(prepared.test),
    }


def export_run(run: TrainedRun, prepared: PreparedData, models_dir: Path, curve_png: bytes | None = None) -> Path:
    """Writes the run as a new version directory (atomically) and returns its path."""
    data = prepared.data
    sample = run.test_query_embeddings[: run.config.index_recall_queries]
    label = f"layers={','.join(map(str, run.config.layers))}"
    artifacts = TrainedArtifacts(
        query_tower=run.query_tower,
        candidate_tower=run.candidate_tower,
        candidate_embeddings=run.candidate_embeddings,
        index_queries=sample,
        movies=data.movies,
        seen=prepared.seen,
        popularity=prepared.popularity,
        history=run.history,
        curve_png=curve_png or validation_curve_png({label: run.history}),
        config=run.config,
        data={
            "dataset": run.config.dataset,
            "layout": data.layout,
            "fingerprint": data.fingerprint,
            "num_ratings": len(data.ratings),
            "num_users": int(data.ratings["user_id"].nunique()),
            "num_movies": len(data.movies),
            "timestamp_min": int(data.ratings["timestamp"].min()),
            "timestamp_max": int(data.ratings["timestamp"].max()),
        },
        metrics=run.metrics,
    )
    return export_version(models_dir, artifacts)


def train_and_export(
    config: TrainConfig, data_dir: Path, models_dir: Path, promote_version: bool = True, progress: bool = True
) -> Path:
    """The whole offline job for one configuration; returns the new version directory."""
    prepared = prepare(config, data_dir)
    run = fit(config, prepared, progress=progress)
    version_dir = export_run(run, prepared, models_dir)
    if promote_version:
        promote(models_dir, version_dir.name)
    return version_dir


def compare(
    configs: list[TrainConfig], data_dir: Path, models_dir: Path, progress: bool = True
) -> list[tuple[TrainedRun, Path]]:
    """Trains several configurations on one split and exports each with a shared validation plot.

    Nothing is promoted: comparing depths is a study, and the caller decides what to serve.
    """
    split_keys = {(c.dataset, c.split, c.test_fraction, c.seed, c.eval_max_queries) for c in configs}
    if len(split_keys) != 1:
        raise ValueError("compared configs must share dataset, split, test_fraction, seed and eval_max_queries")
    prepared = prepare(configs[0], data_dir)
    runs = [fit(config, prepared, progress=progress) for config in configs]
    curve = validation_curve_png({f"layers={','.join(map(str, r.config.layers))}": r.history for r in runs})
    return [(run, export_run(run, prepared, models_dir, curve)) for run in runs]
