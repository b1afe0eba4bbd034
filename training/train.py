"""Orchestration, top to bottom: data (+ stored ratings) -> folds -> fit -> evaluate -> refit -> export -> promote.

`train_versions` is the one entry point: the `train`, `compare` and `retrain` commands and the benchmarks
all call it, so every path through training produces versions the same way. Each configuration is fit up
to three times: on the random split (protocols A and B), on the earliest ratings (protocol T), and on every
rating for the version that is served (`refit`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from contract.manifest import DataInfo, HeldOut, Metrics, QueryInfo, Table
from contract.pointers import promote
from contract.user_ratings import UserRatings, build_user_ratings, history_movie_ids, known_bound
from training.config import TrainConfig
from training.data import MovieLens, load_movielens, with_stored_ratings
from training.dataset import (
    Vocabularies,
    build_vocabularies,
    candidates_dataset,
    catalogue_rows,
    ratings_dataset,
    split_ratings,
)
from training.distribute import agreed_minimum, cluster_from_env, make_strategy
from training.evaluate import HeldOut as HeldOutRatings
from training.evaluate import accuracy_table, baseline_ranks, model_ranks, popularity_ranking
from training.export import TrainedArtifacts, export_version
from training.memory import release_memory
from training.model import build_model
from training.plot import training_curve_png
from training.progress import EpochProgress
from training.stages import StageLog


@dataclass(frozen=True)
class Fold:
    """What one model is fit on and, unless it is the serving refit, the held-out ratings it is scored on."""

    data: MovieLens
    train: pd.DataFrame
    known: UserRatings  # the training ratings by user: training histories, seen lists, known users
    popularity: np.ndarray  # int32 movie rows by training count: the unknown-user fallback
    test: pd.DataFrame | None = None  # the held-out ratings scored (possibly subsampled)
    test_histories: np.ndarray | None = None  # int32 [len(test), H]: what the service would have known then
    held_out: HeldOutRatings | None = None


@dataclass(frozen=True)
class PreparedData:
    """The data side of a run, shared by every configuration trained on it."""

    data: MovieLens
    random: Fold  # protocols A and B
    temporal: Fold | None  # protocol T
    temporal_info: HeldOut | None
    everything: Fold  # every rating: the serving refit


@dataclass(frozen=True)
class TrainedRun:
    """One fitted model: its towers and, when it was scored, its query embeddings of the held-out ratings."""

    config: TrainConfig
    vocab: Vocabularies  # what the towers adapted to, the time range they clamp to included
    query_tower: tf.keras.Model
    candidate_tower: tf.keras.Model
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    test_query_embeddings: np.ndarray | None  # float32 [test_size, d]
    history: dict[str, Any]


@dataclass(frozen=True)
class TrainedVersion:
    """What the orchestration hands back for each configuration: where it was exported and how it scored."""

    config: TrainConfig
    version_dir: Path
    metrics: Metrics
    history: dict[str, Any]
    compared_on_window: Table | None = None  # the `compare_with` version's protocol-T table on the same window


def train_versions(
    configs: Sequence[TrainConfig],
    data_dir: Path,
    models_dir: Path,
    *,
    promote_version: bool = False,
    progress: bool = True,
    ratings_url: str | None = None,
    held_out_after_id: int | None = None,
    compare_with: Path | None = None,
    stages: StageLog | None = None,
) -> list[TrainedVersion]:
    """The offline job: load, fit, evaluate, refit and export each configuration; promote a single one on request.

    Under a multi-worker strategy every worker calls this alike; the chief returns its versions, the others [].

    Args:
        ratings_url: a ratings store whose ratings (up to its newest id now) are trained on too.
        held_out_after_id: protocol T holds out the stored ratings after this id (the retrainer's window)
            instead of the latest share by time.
        compare_with: an exported version (the current one) to score under protocol T on that same window.
        stages: records each stage's time and memory (a fresh log when not given).
    Raises:
        ValueError: configurations that would split differently, or promotion asked for several versions.
        training.data.DataError: the data cannot be used.
    """
    split_keys = {
        (c.dataset, c.split, c.test_fraction, c.seed, c.eval_max_queries, c.eval_max_cells, c.history_length)
        for c in configs
    }
    if len(split_keys) != 1:
        raise ValueError("compared configs must share dataset, split, test_fraction, seed, eval sizes and history")
    if promote_version and len(configs) != 1:
        raise ValueError("only a single trained version can be promoted; compare runs are studies")
    strategy = make_strategy(configs[0].distribute)  # before TensorFlow runs anything else
    chief = cluster_from_env().is_chief
    stages = stages if stages is not None else StageLog()
    cutoff = None if ratings_url is None else agreed_minimum(strategy, _newest_stored_id(ratings_url))
    prepared = prepare(configs[0], data_dir, ratings_url, held_out_after_id, stages, ratings_cutoff_id=cutoff)
    with strategy.scope():
        results = [_train_one(config, prepared, progress, stages) for config in configs]
    curve = training_curve_png({run.config.label: run.history for run, _ in results})
    compared = None
    if compare_with is not None and prepared.temporal is not None:
        with stages.stage("score the current version (T)"):
            compared = _score_exported(compare_with, prepared.temporal, configs[0])
    if not chief:  # a worker exports too (saving may need every worker), into a folder it then deletes
        with tempfile.TemporaryDirectory(prefix="worker-export-") as scratch:
            for run, metrics in results:
                export_run(run, prepared, Path(scratch), curve, metrics)
        return []
    trained = []
    for run, metrics in results:
        with stages.stage("export"):
            version_dir = export_run(run, prepared, models_dir, curve, metrics)
        trained.append(TrainedVersion(run.config, version_dir, metrics, run.history, compared))
    if promote_version:
        promote(models_dir, trained[0].version_dir.name)
    return trained


def _score_exported(version_dir: Path, fold: Fold, config: TrainConfig) -> Table:
    from training.rescore import score_exported

    assert fold.test is not None and fold.held_out is not None
    users, times = fold.test["user_id"].to_numpy(np.int64), fold.test["timestamp"].to_numpy(np.int64)
    movie_ids = fold.data.movies["movie_id"].to_numpy().astype(str)
    return score_exported(version_dir, fold.held_out, users, times, movie_ids, config.eval_batch_size)


def _newest_stored_id(ratings_url: str) -> int:
    from contract.ratings import RatingsStore

    with RatingsStore(ratings_url) as store:
        store.create_schema()
        return store.last_id()


def load_data(
    config: TrainConfig, data_dir: Path, ratings_url: str | None, ratings_cutoff_id: int | None = None
) -> MovieLens:
    """The MovieLens files, plus the stored ratings up to `ratings_cutoff_id` (default: the store's newest id)."""
    data = load_movielens(data_dir, config.dataset)
    if ratings_url is None:
        return data
    from contract.ratings import RatingsStore

    with RatingsStore(ratings_url) as store:
        store.create_schema()
        cutoff = store.last_id() if ratings_cutoff_id is None else ratings_cutoff_id
        return with_stored_ratings(data, store.ratings_up_to(cutoff), cutoff)


def prepare(
    config: TrainConfig,
    data_dir: Path,
    ratings_url: str | None = None,
    held_out_after_id: int | None = None,
    stages: StageLog | None = None,
    *,
    ratings_cutoff_id: int | None = None,
) -> PreparedData:
    """Loads the data and fixes the folds, so that several models can be compared on the same ones.

    `ratings_cutoff_id`: the newest stored rating to train on (every worker of a cluster passes the same).
    """
    stages = stages if stages is not None else StageLog()
    with stages.stage("load"):
        data = load_data(config, data_dir, ratings_url, ratings_cutoff_id)
    with stages.stage("folds A/B"):
        rows = catalogue_rows(data, data.ratings)
        everything = build_user_ratings(data.ratings, rows)
        split = split_ratings(data.ratings, config.split, config.test_fraction, config.seed)
        train, test = split.train, split.test
        if config.evaluate_on == "validation":  # carved from the training ratings: the test ratings stay unseen
            carved = split_ratings(train, config.split, config.test_fraction, config.seed + 1)
            train, test = carved.train, carved.test
        random_fold = _scored_fold(config, data, train, test, known_at_query=None)
    temporal, info = None, None
    if config.evaluate_temporal:
        with stages.stage("fold T"):
            temporal, info = _temporal_fold(config, data, everything, held_out_after_id)
    serving = Fold(
        data=data,
        train=data.ratings,
        known=everything,
        popularity=popularity_ranking(rows, len(data.movies)),
    )
    return PreparedData(data, random_fold, temporal, info, serving)


def _temporal_fold(
    config: TrainConfig, data: MovieLens, everything: UserRatings, after_id: int | None
) -> tuple[Fold, HeldOut]:
    """Protocol T's fold: its held-out ratings know every rating before them in `everything`."""
    train, test, info = _temporal_split(data.ratings, config.test_fraction, after_id)
    if config.evaluate_on == "validation":
        # The latest share of the training part is held out instead; the test ratings are never known.
        known = train
        train, test, info = _temporal_split(known, config.test_fraction, None)
        everything = build_user_ratings(known, catalogue_rows(data, known))
    return _scored_fold(config, data, train, test, known_at_query=everything), info


def _temporal_split(
    ratings: pd.DataFrame, test_fraction: float, after_id: int | None
) -> tuple[pd.DataFrame, pd.DataFrame, HeldOut]:
    """Protocol T's hold-out: the stored ratings after `after_id` when given, else the latest share by time."""
    if after_id is None or "stored_id" not in ratings:
        split = split_ratings(ratings, "temporal", test_fraction, seed=0)
        return split.train, split.test, HeldOut(how="latest", test_size=len(split.test))
    held = (ratings["stored_id"] > after_id).to_numpy()
    info = HeldOut(how="after_id", after_id=after_id, test_size=int(held.sum()))
    return ratings[~held].reset_index(drop=True), ratings[held].reset_index(drop=True), info


def _scored_fold(
    config: TrainConfig,
    data: MovieLens,
    train: pd.DataFrame,
    test: pd.DataFrame,
    known_at_query: UserRatings | None,
) -> Fold:
    """A fold whose held-out ratings are scored as the service would answer them.

    With `known_at_query` None (protocols A and B) a query knows the training ratings: its history is the
    user's training ratings before it, and all of them are excluded. Otherwise (protocol T) it knows every
    rating before its time in `known_at_query`, and those are both its history and its exclusions.
    """
    # Scoring costs queries x movies: a large catalogue gets fewer queries.
    limit = min(config.eval_max_queries, max(1, config.eval_max_cells // max(len(data.movies), 1)))
    if len(test) > limit:
        picked = np.random.default_rng(config.seed).choice(len(test), limit, replace=False)
        test = test.iloc[np.sort(picked)].reset_index(drop=True)
    known = build_user_ratings(train, catalogue_rows(data, train))
    users, times = test["user_id"].to_numpy(np.int64), test["timestamp"].to_numpy(np.int64)
    source = known if known_at_query is None else known_at_query
    bounds = known_bound(times, at_now=False)  # offline, every query names its moment
    history_start, history_end = source.spans_before(users, bounds)
    start, end = known.spans(users) if known_at_query is None else (history_start, history_end)
    held_out = HeldOutRatings(
        targets=catalogue_rows(data, test),
        known=source,
        exclude_start=start,
        exclude_end=end,
        # Unknown to the model and nothing rated before: the service answers from popularity.
        fallback=(known.positions(users) < 0) & (history_end == history_start),
    )
    return Fold(
        data=data,
        train=train,
        known=known,
        popularity=popularity_ranking(known.movie_rows, len(data.movies)),
        test=test,
        test_histories=source.histories(users, bounds, config.history_length) if config.history_length else None,
        held_out=held_out,
    )


def _train_one(
    config: TrainConfig, prepared: PreparedData, progress: bool, stages: StageLog
) -> tuple[TrainedRun, Metrics]:
    """Fit and score on each protocol's fold, then the serving model (the refit, or the protocol-A/B one)."""
    with stages.stage("fit A/B"):
        scored = fit(config, prepared.random, progress=progress, curve=True)
    with stages.stage("score A/B"):
        model, baseline = _tables(config, prepared.random, scored, {"A": False, "B": True})
    # Each fit is let go once scored, before the next starts: at 25M ratings each one held gigabytes.
    served = None if config.refit else scored
    history = scored.history  # the curve and timings of the scored fit describe the configuration
    del scored
    release_memory()
    if prepared.temporal is not None:
        with stages.stage("fit T"):
            temporal = fit(config, prepared.temporal, progress=progress, label=f"{config.label} (T)")
        with stages.stage("score T"):
            model_t, baseline_t = _tables(config, prepared.temporal, temporal, {"T": True})
        del temporal
        release_memory()
        model, baseline = {**model, **model_t}, {**baseline, **baseline_t}
    metrics = Metrics(
        model=model,
        most_popular=baseline,
        split=config.split,
        test_size=len(prepared.random.test) if prepared.random.test is not None else 0,
        temporal=prepared.temporal_info,
    )
    if served is None:
        with stages.stage("refit"):
            refit = fit(config, prepared.everything, progress=progress, label=f"{config.label} (refit)")
        served = dataclasses.replace(refit, history={**history, "refit_seconds": refit.history["train_seconds"]})
    return served, metrics


def _tables(
    config: TrainConfig, fold: Fold, run: TrainedRun, protocols: dict[str, bool]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Model and most-popular tables for each protocol name -> whether it excludes known movies."""
    assert fold.held_out is not None and run.test_query_embeddings is not None
    chunk = config.eval_score_chunk
    model, baseline = {}, {}
    for name, exclude in protocols.items():
        ranks = model_ranks(
            run.test_query_embeddings, run.candidate_embeddings, fold.popularity, fold.held_out, exclude, chunk
        )
        model[name] = accuracy_table(ranks)
        baseline[name] = accuracy_table(baseline_ranks(fold.popularity, fold.held_out, exclude, chunk))
    return model, baseline


def query_inputs(frame: pd.DataFrame, histories: np.ndarray | None, movie_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The query tower's inputs for rows of `frame`: user_id and timestamp strings/ints, history movie ids."""
    inputs = {
        "user_id": frame["user_id"].to_numpy(np.int64).astype(str),
        "timestamp": frame["timestamp"].to_numpy(np.int64),
    }
    if histories is not None:
        inputs["history"] = history_movie_ids(histories, movie_ids)
    return inputs


def fit(
    config: TrainConfig, fold: Fold, progress: bool = True, label: str | None = None, curve: bool = False
) -> TrainedRun:
    """Trains one two-tower model on `fold.train`; with `curve`, scores A and B every `eval_every` epochs."""
    tf.keras.utils.set_random_seed(config.seed)
    vocab = build_vocabularies(fold.data, fold.train)
    train_ds = ratings_dataset(
        fold.data,
        fold.train,
        vocab,
        config.batch_size,
        known=fold.known,
        history_length=config.history_length,
        shuffle_seed=config.seed,
        user_dropout=config.user_dropout,
    )
    model, query_tower, candidate_tower = build_model(vocab, config)
    movies_ds = candidates_dataset(vocab, config.eval_batch_size).cache()
    queries_ds = None
    if fold.test is not None:
        inputs = query_inputs(fold.test, fold.test_histories, vocab.movie_ids)
        queries_ds = tf.data.Dataset.from_tensor_slices(inputs).batch(config.eval_batch_size).cache()

    def embed() -> tuple[np.ndarray, np.ndarray | None]:
        candidates = embed_batches(candidate_tower, movies_ds)
        return candidates, None if queries_ds is None else embed_batches(query_tower, queries_ds)

    def evaluate_now() -> dict[str, dict[str, float]]:
        candidates, queries = embed()
        assert fold.held_out is not None and queries is not None
        ranks = {
            name: model_ranks(queries, candidates, fold.popularity, fold.held_out, exclude, config.eval_score_chunk)
            for name, exclude in (("A", False), ("B", True))
        }
        return {name: accuracy_table(r) for name, r in ranks.items()}

    evaluate_at = set()
    if curve and fold.test is not None:
        evaluate_at = {*range(config.eval_every, config.epochs + 1, config.eval_every), config.epochs}
    bar = EpochProgress(config.epochs, label or config.label, evaluate_now, evaluate_at, enabled=progress)
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(train_ds, epochs=config.epochs, verbose=0, callbacks=[bar])
    seconds = time.perf_counter() - started
    candidate_embeddings, query_embeddings = embed()
    history = dict(
        bar.history,
        train_seconds=seconds,
        train_cpu_seconds=time.process_time() - cpu_started,
        seconds_per_epoch=seconds / config.epochs,
        examples_per_second=len(fold.train) * config.epochs / seconds,
    )
    return TrainedRun(config, vocab, query_tower, candidate_tower, candidate_embeddings, query_embeddings, history)


def _index_queries(run: TrainedRun, prepared: PreparedData) -> np.ndarray:
    """Real query embeddings of the served model to measure its index's recall on: the latest ratings' users."""
    config, serving = run.config, prepared.everything
    frame = serving.train.sort_values("timestamp").tail(config.index_recall_queries)
    histories = None
    if config.history_length:
        users, times = frame["user_id"].to_numpy(np.int64), frame["timestamp"].to_numpy(np.int64)
        histories = serving.known.histories(users, known_bound(times, at_now=False), config.history_length)
    movie_ids = prepared.data.movies["movie_id"].to_numpy().astype(str)
    inputs = query_inputs(frame, histories, movie_ids)
    return embed_batches(run.query_tower, tf.data.Dataset.from_tensor_slices(inputs).batch(config.eval_batch_size))


def embed_batches(tower: tf.keras.Model, batches: tf.data.Dataset) -> np.ndarray:
    """float32 [n, d]: the tower on every batch, in order, on this process alone.

    Not `predict`: under a multi-worker strategy it would shard the batches across workers.
    """
    parts = [tower(batch, training=False).numpy() for batch in batches]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, tower.output_shape[-1]), np.float32)


def export_run(run: TrainedRun, prepared: PreparedData, models_dir: Path, curve_png: bytes, metrics: Metrics) -> Path:
    """Writes the served model as a new version directory (atomically) and returns its path."""
    data = prepared.data
    served = prepared.everything if run.config.refit else prepared.random
    artifacts = TrainedArtifacts(
        query_tower=run.query_tower,
        candidate_tower=run.candidate_tower,
        candidate_embeddings=run.candidate_embeddings,
        index_queries=_index_queries(run, prepared),
        movies=data.movies,
        user_ratings=served.known,
        popularity=served.popularity,
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
            ratings_cutoff_id=data.ratings_cutoff_id,
            num_stored_ratings=data.num_stored,
        ),
        query=QueryInfo(
            history_length=run.config.history_length,
            timestamp_min=run.vocab.timestamp_min,
            timestamp_max=run.vocab.timestamp_max,
        ),
        metrics=metrics,
    )
    return export_version(models_dir, artifacts)
