"""Writes one model version under models/ atomically.

A version is built in a hidden temporary directory beside its final place and renamed only once complete,
with manifest.json (which lists every file's sha256) written last: a crash at any moment leaves nothing
that looks like a version. See models/README.md for the contract the service reads.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from contract import manifest as layout
from contract.checksums import file_checksums
from contract.manifest import DataInfo, Manifest, Metrics, QueryInfo, write_manifest
from contract.pointers import TMP_PREFIX, fsync_dir, new_version_name
from contract.query_tower import write_query_weights
from contract.rating_model import RatingModel, served_candidates, write_rating_model
from contract.user_ratings import UserRatings
from training.config import TrainConfig
from training.data import MovieLens
from training.dataset import candidates_dataset
from training.fit import TrainedRun, embed_batches, index_queries
from training.folds import PreparedData
from training.index import build_index
from training.query_weights import mirrored_arrays

LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "scann", "numpy", "pandas")


@dataclass(frozen=True)
class TrainedArtifacts:
    """Everything a version holds, in memory, before it is written."""

    query_tower: tf.keras.Model
    candidate_tower: tf.keras.Model
    candidate_embeddings: np.ndarray  # float32 [num_movies, d], rows = movies
    content_embeddings: np.ndarray  # float32 [num_movies, d - item_item_dim]: layout.CONTENT_EMBEDDINGS
    index_queries: np.ndarray  # float32 [q, d (+ rating width)], real served queries to measure index recall on
    rating_model: RatingModel | None  # the rating term (layout.RATING_MODEL), None: the version has none
    movies: pd.DataFrame  # movie_id, title, genres ("A|B")
    user_ratings: UserRatings  # the served model's training ratings: seen lists and histories
    popularity: np.ndarray  # int32 movie rows, most rated first
    training_log: dict[str, Any]
    curve_png: bytes
    config: TrainConfig
    data: DataInfo
    query: QueryInfo
    metrics: Metrics


def export_version(models_dir: Path, artifacts: TrainedArtifacts, now: datetime | None = None) -> Path:
    """Writes models/<version>/ and returns its path; nothing is left behind if anything fails."""
    models_dir.mkdir(parents=True, exist_ok=True)
    created = now or datetime.now(UTC)
    name = new_version_name(models_dir, created)
    staging = models_dir / f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _write_contents(staging, artifacts)
        served = served_candidates(artifacts.candidate_embeddings, artifacts.rating_model)
        index = build_index(served, artifacts.index_queries, artifacts.config, staging / layout.SCANN)
        manifest = Manifest(
            version=name,
            created_at=created.isoformat(timespec="seconds"),
            config=artifacts.config.model_dump(mode="json"),
            data=artifacts.data,
            library_versions={lib.replace("-", "_"): metadata.version(lib) for lib in LIBRARIES},
            metrics=artifacts.metrics,
            index=index,
            query=artifacts.query,
            embedding_dim=int(artifacts.candidate_embeddings.shape[1]),
            item_item_dim=artifacts.config.item_item_width,
            item_item_prior=artifacts.config.query_spec.item_item_prior,
            rating_width=artifacts.rating_model.width if artifacts.rating_model is not None else 0,
            files=file_checksums(staging),
        )
        write_manifest(staging, manifest)
        _fsync_tree(staging)
        final = models_dir / name
        os.rename(staging, final)
        fsync_dir(models_dir)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_contents(staging: Path, artifacts: TrainedArtifacts) -> None:
    query_inputs = {"user_id": tf.TensorSpec([None], tf.string), "timestamp": tf.TensorSpec([None], tf.int64)}
    if artifacts.query.history_length:
        query_inputs["history"] = tf.TensorSpec([None, artifacts.query.history_length], tf.string)
    if artifacts.query.history_ratings:
        query_inputs["history_rating"] = tf.TensorSpec([None, artifacts.query.history_length], tf.float32)
    _save_tower(artifacts.query_tower, staging / layout.QUERY_MODEL, query_inputs)
    movie_ids = artifacts.movies["movie_id"].astype(str).tolist()
    write_query_weights(staging, mirrored_arrays(artifacts.query_tower, artifacts.config.query_spec, movie_ids))
    # movie_id, title and, when the tower reads them (candidate_genres), the genres joined by "|".
    candidate_inputs = {name: tf.TensorSpec([None], tf.string) for name in artifacts.candidate_tower.input_names}
    _save_tower(artifacts.candidate_tower, staging / layout.CANDIDATE_MODEL, candidate_inputs)
    np.save(staging / layout.CANDIDATE_EMBEDDINGS, artifacts.candidate_embeddings.astype(np.float32))
    np.save(staging / layout.CONTENT_EMBEDDINGS, artifacts.content_embeddings.astype(np.float32))
    if artifacts.rating_model is not None:
        write_rating_model(staging / layout.RATING_MODEL, artifacts.rating_model)
    movies = [
        {"movie_id": str(movie_id), "title": title, "genres": [g for g in genres.split("|") if g]}
        for movie_id, title, genres in artifacts.movies[["movie_id", "title", "genres"]].itertuples(index=False)
    ]
    _write_json(staging / layout.MOVIES, movies)
    known = artifacts.user_ratings
    seen = {
        "user_ids": known.user_ids.astype(str),
        "indptr": known.indptr.astype(np.int64),
        "movie_rows": known.movie_rows.astype(np.int32),
        "timestamps": known.timestamps.astype(np.int64),
    }
    if known.values is not None:
        seen["ratings"] = known.values.astype(np.float32)
    np.savez(staging / layout.SEEN, **seen)  # type: ignore[arg-type]
    np.save(staging / layout.POPULARITY, artifacts.popularity.astype(np.int32))
    _write_json(staging / layout.TRAINING_HISTORY, artifacts.training_log)
    (staging / layout.TRAINING_CURVE).write_bytes(artifacts.curve_png)


def _save_tower(tower: tf.keras.Model, path: Path, inputs: dict[str, tf.TensorSpec]) -> None:
    """SavedModel with one plain signature: named inputs -> {"embedding": float32 [batch, d]}."""
    specs = {name: tf.TensorSpec(spec.shape, spec.dtype, name=name) for name, spec in inputs.items()}

    @tf.function(input_signature=[specs])
    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"embedding": tower(features, training=False)}

    # Keeping the tower on the module tracks its variables, so the SavedModel holds the weights the signature uses.
    signature = serve.get_concrete_function()
    module = tf.Module()
    module.tower = tower
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": signature})


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def export_trained(
    run: TrainedRun, prepared: PreparedData, models_dir: Path, curve_png: bytes, metrics: Metrics
) -> Path:
    """Writes the served model of a run as a new version directory (atomically) and returns its path."""
    data = prepared.data
    served = prepared.everything if run.config.refit or prepared.random is None else prepared.random
    artifacts = TrainedArtifacts(
        query_tower=run.query_tower,
        candidate_tower=run.candidate_tower,
        candidate_embeddings=run.candidate_embeddings,
        content_embeddings=content_embeddings(run),
        index_queries=index_queries(run, prepared),
        rating_model=run.rating_model,
        movies=data.movies,
        user_ratings=served.known,
        popularity=served.popularity,
        training_log=run.training_log,
        curve_png=curve_png,
        config=run.config,
        data=_data_info(data, run.config.dataset),
        query=QueryInfo(
            history_length=run.config.history_length,
            history_ratings=run.config.query_spec.history_ratings,
            history_min_rating=run.config.history_min_rating,
            timestamp_min=run.vocab.timestamp_min,
            timestamp_max=run.vocab.timestamp_max,
        ),
        metrics=metrics,
    )
    return export_version(models_dir, artifacts)


def content_embeddings(run: TrainedRun) -> np.ndarray:
    """float32 [num_movies, d - item_item_width] (layout.CONTENT_EMBEDDINGS): every movie through the candidate
    tower with its id blanked, as movie_dropout trains it and a movie added later is read, without the
    item-to-item columns. Computed here, for the version written, not in every fit."""
    blanked = embed_batches(
        run.candidate_tower, candidates_dataset(run.vocab, run.config.eval_batch_size, blank_ids=True)
    )
    return blanked[:, : blanked.shape[1] - run.config.item_item_width]


def _data_info(data: MovieLens, dataset: str) -> DataInfo:
    """The manifest's description of what the served model was trained on."""
    ratings = data.ratings
    return DataInfo(
        dataset=dataset,
        layout=data.layout,
        fingerprint=data.fingerprint,
        num_ratings=len(ratings),
        num_users=int(ratings["user_id"].nunique()),
        num_movies=len(data.movies),
        timestamp_min=int(ratings["timestamp"].min()),
        timestamp_max=int(ratings["timestamp"].max()),
        ratings_cutoff_id=data.ratings_cutoff_id,
        num_stored_ratings=data.num_stored,
        catalogue_cutoff_id=data.catalogue_cutoff_id,
    )
