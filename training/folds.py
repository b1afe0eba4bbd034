"""The folds a run trains and scores on: the data (+ stored ratings), the random split (protocols A and B),
the temporal one (protocol T) and every rating (the serving refit), each with what a query knew then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contract.manifest import HoldOutInfo
from contract.ratings import RatingsStore
from contract.user_ratings import UserRatings, build_user_ratings, known_bound
from training.catalogue import catalogue_last_id, read_catalogue, with_catalogue
from training.config import TrainConfig
from training.data import MovieLens, load_movielens, with_stored_ratings
from training.dataset import catalogue_rows, split_ratings
from training.evaluate import HeldOutQueries, popularity_ranking
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
    test_history_ratings: np.ndarray | None = None  # float32 [len(test), H]: those ratings' stars
    held_out: HeldOutQueries | None = None


@dataclass(frozen=True)
class PreparedData:
    """The data side of a run, shared by every configuration trained on it."""

    data: MovieLens
    random: Fold | None  # protocols A and B (None: the run is not scored)
    temporal: Fold | None  # protocol T
    temporal_info: HoldOutInfo | None
    everything: Fold  # every rating: the serving refit


def load_data(
    config: TrainConfig,
    data_dir: Path,
    store: RatingsStore | None,
    ratings_cutoff_id: int | None = None,
    catalogue_cutoff_id: int | None = None,
) -> MovieLens:
    """The MovieLens files, plus the catalogue store's movies up to `catalogue_cutoff_id` and the stored
    ratings up to `ratings_cutoff_id` (defaults: each store's newest id)."""
    data = load_movielens(data_dir, config.dataset)
    if store is None:
        return data
    changes = catalogue_last_id(store) if catalogue_cutoff_id is None else catalogue_cutoff_id
    data = with_catalogue(data, read_catalogue(store, changes), changes)  # first: ratings of new movies count
    cutoff = store.last_id() if ratings_cutoff_id is None else ratings_cutoff_id
    return with_stored_ratings(data, store.ratings_up_to(cutoff), cutoff)


def prepare(
    config: TrainConfig,
    data_dir: Path,
    store: RatingsStore | None = None,
    held_out_after_id: int | None = None,
    stages: StageLog | None = None,
    *,
    ratings_cutoff_id: int | None = None,
    catalogue_cutoff_id: int | None = None,
) -> PreparedData:
    """Loads the data and fixes the folds, so that several models can be compared on the same ones.

    `ratings_cutoff_id`, `catalogue_cutoff_id`: the newest stored rating and catalogue change to train on
    (every worker of a cluster passes the same).
    """
    stages = stages if stages is not None else StageLog()
    with stages.stage("load"):
        data = load_data(config, data_dir, store, ratings_cutoff_id, catalogue_cutoff_id)
    rows = catalogue_rows(data, data.ratings)
    everything = build_user_ratings(data.ratings, rows)
    random_fold = None
    if config.evaluate:
        with stages.stage("folds A/B"):
            split = split_ratings(data.ratings, config.split, config.test_fraction, config.seed)
            train, test = split.train, split.test
            if config.evaluate_on == "validation":  # carved from the training ratings: the test ratings stay unseen
                carved = split_ratings(train, config.split, config.test_fraction, config.seed + 1)
                train, test = carved.train, carved.test
            random_fold = _scored_fold(config, data, train, test, known_at_query=None)
    temporal, info = None, None
    if config.evaluate and config.evaluate_temporal:
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
) -> tuple[Fold, HoldOutInfo]:
    """Protocol T's fold: its held-out ratings know every rating before them in `everything`."""
    train, test, info = _temporal_split(data.ratings, config.test_fraction, after_id)
    if config.evaluate_on == "validation":
        # The latest share of the training part is held out instead; the test ratings are never known.
        known = train
        train, test, info = _temporal_split(known, config.test_fraction, None)
        everything = build_user_ratings(known, catalogue_rows(data, known))
    return _scored_fold(config, data, train, test, known_at_query=everything), info


def leave_one_out_fold(config: TrainConfig, data: MovieLens) -> Fold:
    """Leave-one-out (the sequential-recommendation literature's protocol): each user's latest rating is held
    out and asked at its time, knowing every rating before it; the model trains on all the others. With
    `evaluate_on` "validation", each user's latest is dropped first and the one before it is held out."""
    ratings = data.ratings
    if config.evaluate_on == "validation":
        ratings = ratings.drop(index=_latest_per_user(ratings)).reset_index(drop=True)
    latest = _latest_per_user(ratings)
    test = ratings.loc[latest].reset_index(drop=True)
    train = ratings.drop(index=latest).reset_index(drop=True)
    return _scored_fold(
        config, data, train, test, known_at_query=build_user_ratings(ratings, catalogue_rows(data, ratings))
    )


def _latest_per_user(ratings: pd.DataFrame) -> pd.Index:
    """The index of each user's latest rating (the last row among those in its latest second)."""
    ordered = ratings.reset_index().sort_values(["user_id", "timestamp", "index"], kind="stable")
    return pd.Index(ordered.groupby("user_id", sort=False)["index"].last().to_numpy())


def _temporal_split(
    ratings: pd.DataFrame, test_fraction: float, after_id: int | None
) -> tuple[pd.DataFrame, pd.DataFrame, HoldOutInfo]:
    """Protocol T's hold-out: the stored ratings after `after_id` when given, else the latest share by time."""
    if after_id is None or "stored_id" not in ratings:
        split = split_ratings(ratings, "temporal", test_fraction, seed=0)
        return split.train, split.test, HoldOutInfo(how="latest", test_size=len(split.test))
    held = (ratings["stored_id"] > after_id).to_numpy()
    info = HoldOutInfo(how="after_id", after_id=after_id, test_size=int(held.sum()))
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
    taste = source.read_as_history(config.history_min_rating)  # what a history reads of `source`
    bounds = known_bound(times, at_now=False)  # offline, every query names its moment
    start, end = known.spans(users) if known_at_query is None else source.spans_before(users, bounds)
    taste_start, taste_end = taste.spans_before(users, bounds)
    held_out = HeldOutQueries(
        targets=catalogue_rows(data, test),
        known=source,
        exclude_start=start,
        exclude_end=end,
        # Unknown to the model and nothing read as history before: the service answers from popularity.
        fallback=(known.positions(users) < 0) & (taste_end == taste_start),
        stars=test["rating"].to_numpy(np.float32) if "rating" in test else None,
    )
    histories = taste.rated_histories(users, bounds, config.history_length) if config.history_length else None
    return Fold(
        data=data,
        train=train,
        known=known,
        popularity=popularity_ranking(known.movie_rows, len(data.movies)),
        test=test,
        test_histories=histories[0] if histories is not None else None,
        test_history_ratings=histories[1] if histories is not None else None,
        held_out=held_out,
    )
