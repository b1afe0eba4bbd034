"""Orchestration, top to bottom: config -> data (+ stored ratings) -> folds -> fit -> score -> export -> promote.

`train_versions` is the one entry point: the `train`, `compare` and `retrain` commands and the benchmarks
all call it, so every path through training produces versions the same way. Each configuration is fit up
to three times: on the random split (protocols A and B), on the earliest ratings (protocol T), and on every
rating for the version that is served (`refit`). Each step is a call into the module that owns it:
training/folds.py, fit.py, evaluate.py, export.py, contract/pointers.py.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.manifest import Metrics, Table
from contract.pointers import promote
from contract.ratings import RatingsStore
from training.catalogue import catalogue_last_id
from training.config import TrainConfig
from training.distribute import agreed_minimum, cluster_from_env, make_strategy
from training.evaluate import protocol_tables, served_vectors
from training.export import export_trained
from training.fit import A_AND_B, TrainedRun, fit
from training.folds import Fold, PreparedData, prepare
from training.memory import release_memory
from training.plot import training_curve_png
from training.stages import StageLog


@dataclass(frozen=True)
class TrainedVersion:
    """What the orchestration hands back for each configuration: where it was exported and how it scored."""

    config: TrainConfig
    version_dir: Path
    metrics: Metrics
    training_log: dict[str, Any]
    compared_on_window: Table | None = None  # the `compare_with` version's protocol-T table on the same window


def train_versions(
    configs: Sequence[TrainConfig],
    data_dir: Path,
    models_dir: Path,
    *,
    promote_version: bool = False,
    progress: bool = True,
    ratings: RatingsStore | None = None,
    held_out_after_id: int | None = None,
    compare_with: Path | None = None,
    stages: StageLog | None = None,
) -> list[TrainedVersion]:
    """The offline job: load, fit, evaluate, refit and export each configuration; promote a single one on request.

    Under a multi-worker strategy every worker calls this alike; the chief returns its versions, the others [].

    Args:
        ratings: the ratings store, whose ratings (up to its newest id now) are trained on too; opened once by
            the caller, its schema created.
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
    cutoff = None if ratings is None else agreed_minimum(strategy, ratings.last_id())
    changes = None if ratings is None else agreed_minimum(strategy, catalogue_last_id(ratings))
    prepared = prepare(
        configs[0], data_dir, ratings, held_out_after_id, stages, ratings_cutoff_id=cutoff, catalogue_cutoff_id=changes
    )
    with strategy.scope():
        results = [_train_one(config, prepared, progress, stages) for config in configs]
    curve = training_curve_png({run.config.label: run.training_log for run, _ in results})
    compared = None
    if compare_with is not None and prepared.temporal is not None:
        with stages.stage("score the current version (T)"):
            compared = _score_exported(compare_with, prepared.temporal, configs[0])
    if not chief:  # a worker exports too (saving may need every worker), into a folder it then deletes
        with tempfile.TemporaryDirectory(prefix="worker-export-") as scratch:
            for run, metrics in results:
                export_trained(run, prepared, Path(scratch), curve, metrics)
        return []
    trained = []
    for run, metrics in results:
        with stages.stage("export"):
            version_dir = export_trained(run, prepared, models_dir, curve, metrics)
        trained.append(TrainedVersion(run.config, version_dir, metrics, run.training_log, compared))
    if promote_version:
        promote(models_dir, trained[0].version_dir.name)
    return trained


def _train_one(
    config: TrainConfig, prepared: PreparedData, progress: bool, stages: StageLog
) -> tuple[TrainedRun, Metrics]:
    """Fit and score on each protocol's fold (none when `evaluate` is off), then the served model: the refit
    on every rating, or the protocol-A/B fit itself."""
    model: dict[str, Table] = {}
    baseline: dict[str, Table] = {}
    training_log: dict[str, Any] = {}  # the curve and timings of the scored fit describe the configuration
    served = None
    if prepared.random is not None:
        with stages.stage("fit A/B"):
            scored = fit(config, prepared.random, progress=progress, curve=True)
        with stages.stage("score A/B"):
            model, baseline = _tables(config, prepared.random, scored, A_AND_B)
        # Each fit is let go once scored, before the next starts: at 25M ratings each one held gigabytes.
        served = None if config.refit else scored
        training_log = scored.training_log
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
    test = prepared.random.test if prepared.random is not None else None
    metrics = Metrics(
        model=model,
        most_popular=baseline,
        split=config.split,
        test_size=len(test) if test is not None else 0,
        temporal=prepared.temporal_info,
    )
    if served is None:
        with stages.stage("refit"):
            refit = fit(config, prepared.everything, progress=progress, label=f"{config.label} (refit)")
        refit_seconds = refit.training_log["train_seconds"]
        served = dataclasses.replace(
            refit, training_log={**(training_log or refit.training_log), "refit_seconds": refit_seconds}
        )
    return served, metrics


def _score_exported(version_dir: Path, fold: Fold, config: TrainConfig) -> Table:
    from training.rescore import score_exported

    assert fold.test is not None and fold.held_out is not None
    users, times = fold.test["user_id"].to_numpy(np.int64), fold.test["timestamp"].to_numpy(np.int64)
    movie_ids = fold.data.movies["movie_id"].to_numpy().astype(str)
    return score_exported(version_dir, fold.held_out, users, times, movie_ids, config.eval_batch_size)


def _tables(
    config: TrainConfig, fold: Fold, run: TrainedRun, protocols: dict[str, bool]
) -> tuple[dict[str, Table], dict[str, Table]]:
    """The model's and most-popular's tables on `fold`'s held-out ratings, for each protocol."""
    assert fold.held_out is not None and run.test_query_embeddings is not None
    chunk, popularity, held_out = config.eval_score_chunk, fold.popularity, fold.held_out
    queries, candidates = served_vectors(
        run.rating_model, run.test_query_embeddings, run.candidate_embeddings, held_out
    )
    model = protocol_tables(queries, candidates, popularity, held_out, protocols, chunk, run.rating_model)
    return model, protocol_tables(None, candidates, popularity, held_out, protocols, chunk)
