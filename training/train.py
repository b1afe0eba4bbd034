"""Orchestration, top to bottom: config -> data -> split -> fit -> evaluate -> export -> promote.

`train_versions` is the one entry point: the `train`, `compare` and `retrain` commands and the benchmarks
all call it, so every path through training produces versions the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from contract.manifest import DataInfo, Metrics
from contract.pointers import promote
from training.config import TrainConfig
from training.data import MovieLens, load_movielens
from training.dataset import (
    SeenMovies,
    Split,
    Vocabularies,
    build_seen,
    build_vocabularies,
    candidates_dataset,
    catalogue_rows,
    ratings_dataset,
    split_ratings,
)
from training.evaluate import evaluate_embeddings, evaluate_popularity, popularity_ranking
from training.export import TrainedArtifacts, export_version
from training.model import build_model
from training.plot import training_curve_png
from training.progress import EpochProgress


@dataclass(frozen=True)
class TrainedRun:
    """One fitted model with its offline evaluation, ready to export."""

    config: TrainConfig
    query_tower: tf.keras.Model
    candidate_tower: tf.keras.Model
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    test_query_embeddings: np.ndarray  # float32 [test_size, d]
    history: dict[str, Any]
    metrics: Metrics


@dataclass(frozen=True)
class PreparedData:
    """The data side of a run, shared by every model trained on the same split."""

    data: MovieLens
    split: Split
    test: pd.DataFrame  # the (possibly subsampled) held-out ratings that are scored
    vocab: Vocabularies
    seen: SeenMovies
    popularity: np.ndarray


@dataclass(frozen=True)
class TrainedVersion:
    """What the orchestration hands back for each configuration: where it was exported and how it scored."""

    config: TrainConfig
    version_dir: Path
    metrics: Metrics
    history: dict[str, Any]


def train_versions(
    configs: Sequence[TrainConfig],
    data_dir: Path,
    models_dir: Path,
    *,
    promote_version: bool = False,
    progress: bool = True,
) -> list[TrainedVersion]:
    """The offline job: load, split, fit, evaluate and export each configuration; promote a single one on request.

    Several configurations share one split (so their figures compare) and one training-curve plot.

    Raises:
        ValueError: configurations that would split differently, or promotion asked for several versions.
        training.data.DataError: the data cannot be used.
    """
    split_keys = {(c.dataset, c.split, c.test_fraction, c.seed, c.eval_max_queries) for c in configs}
    if len(split_keys) != 1:
        raise ValueError("compared configs must share dataset, split, test_fraction, seed and eval_max_queries")
    if promote_version and len(configs) != 1:
        raise ValueError("only a single trained version can be promoted; compare runs are studies")
    prepared = prepare(configs[0], data_dir)
    runs = [fit(config, prepared, progress=progress) for config in configs]
    curve = training_curve_png({run.config.label: run.history for run in runs})
    trained = [
        TrainedVersion(run.config, export_run(run, prepared, models_dir, curve), run.metrics, run.history)
        for run in runs
    ]
    if promote_version:
        promote(models_dir, trained[0].version_dir.name)
    return trained


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
        popularity=popularity_ranking(catalogue_rows(data, split.train), len(data.movies)),
    )


def fit(config: TrainConfig, prepared: PreparedData, progress: bool = True) -> TrainedRun:
    """Trains one two-tower model and evaluates it (protocols A and B) against the most-popular baseline."""
    tf.keras.utils.set_random_seed(config.seed)
    data, vocab = prepared.data, prepared.vocab
    train_ds = ratings_dataset(data, prepared.split.train, vocab, config.batch_size, shuffle_seed=config.seed)
    test_ds = ratings_dataset(data, prepared.test, vocab, config.eval_batch_size).cache()
    model, query_tower, candidate_tower = build_model(vocab, config)

    movies_ds = candidates_dataset(vocab, config.eval_batch_size).cache()
    queries_ds = test_ds.map(lambda f: {"user_id": f["user_id"], "timestamp": f["timestamp"]}).cache()

    def embed() -> tuple[np.ndarray, np.ndarray]:
        candidates = candidate_tower.predict(movies_ds, verbose=0).astype(np.float32)
        return candidates, query_tower.predict(queries_ds, verbose=0).astype(np.float32)

    def evaluate_now() -> dict[str, dict[str, float]]:
        candidates, queries = embed()
        return score(prepared, candidates, queries, config).model

    evaluate_at = {*range(config.eval_every, config.epochs + 1, config.eval_every), config.epochs}
    bar = EpochProgress(config.epochs, config.label, evaluate_now, evaluate_at, enabled=progress)
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(train_ds, epochs=config.epochs, verbose=0, callbacks=[bar])
    seconds = time.perf_counter() - started

    candidate_embeddings, query_embeddings = embed()
    metrics = score(prepared, candidate_embeddings, query_embeddings, config)
    history = dict(
        bar.history,
        train_seconds=seconds,
        train_cpu_seconds=time.process_time() - cpu_started,
        seconds_per_epoch=seconds / config.epochs,
    )
    return TrainedRun(config, query_tower, candidate_tower, candidate_embeddings, query_embeddings, history, metrics)


def score(
    prepared: PreparedData, candidate_embeddings: np.ndarray, query_embeddings: np.ndarray, config: TrainConfig
) -> Metrics:
    """The manifest's metrics block: model and most-popular tables under protocols A and B."""
    targets = catalogue_rows(prepared.data, prepared.test)
    users = prepared.test["user_id"].to_numpy(dtype=np.int64)
    chunk = config.eval_score_chunk
    return Metrics(
        model=evaluate_embeddings(query_embeddings, candidate_embeddings, targets, users, prepared.seen, chunk),
        most_popular=evaluate_popularity(
            prepared.popularity, len(candidate_embeddings), targets, users, prepared.seen, chunk
        ),
        split=config.split,
        test_size=len(prepared.test),
    )


def export_run(run: TrainedRun, prepared: PreparedData, models_dir: Path, curve_png: bytes) -> Path:
    """Writes the run as a new version directory (atomically) and returns its path."""
    data = prepared.data
    artifacts = TrainedArtifacts(
        query_tower=run.query_tower,
        candidate_tower=run.candidate_tower,
        candidate_embeddings=run.candidate_embeddings,
        index_queries=run.test_query_embeddings[: run.config.index_recall_queries],
        movies=data.movies,
        seen=prepared.seen,
        popularity=prepared.popularity,
        history=run.history,
        curve_png=curve_png,
        config=run.config,
        data=DataInfo(
            dataset=run.config.dataset,
            layout=data.layout,
            fingerprint=data.fingerprint,
            num_ratings=len(data.ratings),
            num_users=int(data.ratings["user_id"].nunique()),
            num_movies=len(data.movies),
            timestamp_min=int(data.ratings["timestamp"].min()),
            timestamp_max=int(data.ratings["timestamp"].max()),
        ),
        metrics=run.metrics,
    )
    return export_version(models_dir, artifacts)
