"""Held-out split, vocabularies and the tf.data pipelines that feed the two towers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from contract.user_ratings import NO_VALUE, PAD, UserRatings, known_bound
from training.data import MovieLens
from training.item_item_prior import ItemItemPrior

# Batches built at once and kept ready, fixed rather than autotuned: building one (gathers) costs a fraction
# of a training step, and tf.data's autotuning thread made the end of each fit wait 5-15 s on it (py-spy:
# `~RootDataset::Iterator` waiting on its thread pool), longer the more epochs it had modelled.
PARALLEL_BATCHES = 2


@dataclass(frozen=True)
class Split:
    """Training and held-out ratings; the config's split, test_fraction and seed reproduce it."""

    train: pd.DataFrame
    test: pd.DataFrame


@dataclass(frozen=True)
class Vocabularies:
    """Everything the towers adapt to: users and time from the training split only (no peeking at held-out
    ratings), movies and titles from the whole catalogue (a movie's metadata is known before anyone rates it)."""

    user_ids: np.ndarray  # str [num_train_users], sorted
    movie_ids: np.ndarray  # str [num_movies], catalogue order (= rows of movies.json)
    titles: np.ndarray  # str [num_movies]
    genres: np.ndarray  # str [num_movies], "Action|Comedy" ("" for none)
    years: np.ndarray  # int32 [num_movies], release year read from the title, 0 where it names none
    timestamp_min: int
    timestamp_max: int
    timestamp_mean: float
    timestamp_variance: float
    movie_probability: np.ndarray  # float32 [num_movies], share of training ratings (floored above zero)
    item_item_prior: ItemItemPrior | None = None  # with config.item_item_prior: EASE on the training ratings


def split_ratings(ratings: pd.DataFrame, how: str, test_fraction: float, seed: int) -> Split:
    """Random (seeded) or temporal hold-out of `test_fraction` of the ratings.

    The random split is the TFRS tutorial's protocol; the temporal one holds out the latest ratings,
    which is closer to what a deployed recommender faces.
    """
    n = len(ratings)
    n_test = max(1, round(n * test_fraction))
    if how == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif how == "temporal":
        order = np.argsort(ratings["timestamp"].to_numpy(), kind="stable")
    else:
        raise ValueError(f"unknown split {how!r}; use 'random' or 'temporal'")
    test_rows, train_rows = np.sort(order[n - n_test :]), np.sort(order[: n - n_test])
    return Split(
        train=ratings.iloc[train_rows].reset_index(drop=True),
        test=ratings.iloc[test_rows].reset_index(drop=True),
    )


def build_vocabularies(data: MovieLens, train: pd.DataFrame, targets: pd.DataFrame | None = None) -> Vocabularies:
    """Vocabularies and timestamp statistics from the training ratings and the full movie catalogue; each
    movie's sampling probability from the training targets (`train` when not given)."""
    timestamps = train["timestamp"].to_numpy(dtype=np.float64)
    return Vocabularies(
        user_ids=np.unique(train["user_id"].to_numpy()).astype(str),
        movie_ids=data.movies["movie_id"].to_numpy().astype(str),
        titles=data.movies["title"].to_numpy().astype(str),
        genres=data.movies["genres"].to_numpy().astype(str),
        years=release_years(data.movies["title"]),
        timestamp_min=int(timestamps.min()),
        timestamp_max=int(timestamps.max()),
        timestamp_mean=float(timestamps.mean()),
        timestamp_variance=float(timestamps.var()),
        movie_probability=_movie_probability(data, train if targets is None else targets),
    )


def release_years(titles: pd.Series) -> np.ndarray:
    """int32 [n]: the year MovieLens writes at the end of a title, "Toy Story (1995)" -> 1995; 0 when none."""
    years = titles.astype(str).str.extract(r"\((\d{4})[^()]*\)\s*$", expand=False)
    return years.fillna("0").astype(np.int32).to_numpy()


def _movie_probability(data: MovieLens, train: pd.DataFrame) -> np.ndarray:
    counts = np.bincount(catalogue_rows(data, train), minlength=len(data.movies)).astype(np.float64)
    return (np.maximum(counts, 1.0) / max(len(train), 1)).astype(np.float32)


def catalogue_rows(data: MovieLens, ratings: pd.DataFrame) -> np.ndarray:
    """Row of each rating's movie in the catalogue (movies are sorted by movie_id)."""
    return np.searchsorted(data.movies["movie_id"].to_numpy(), ratings["movie_id"].to_numpy()).astype(np.int32)


def ratings_dataset(
    data: MovieLens,
    ratings: pd.DataFrame,
    vocab: Vocabularies,
    batch_size: int,
    known: UserRatings | None = None,
    history_length: int = 0,
    history_ratings: bool = False,
    shuffle_seed: int | None = None,
    user_dropout: float = 0.0,
    movie_dropout: float = 0.0,
    passes: int | None = 1,
) -> tf.data.Dataset:
    """Batches of {user_id, timestamp, [history,] movie_id, title, genres, candidate_probability}, `passes`
    times over `ratings` (None: without end, for one iterator over a whole fit).

    Ids stay integers in memory and become strings one batch at a time (ML-25M as Python strings is
    gigabytes). candidate_probability is each movie's share of the training ratings: the chance that it
    shows up as an in-batch negative, for the logQ correction.

    Each pass is a fresh permutation of the rows (seeded by `shuffle_seed` and the pass number; in order
    without a seed), cut into batches whose columns are gathered from arrays held once. Not
    `Dataset.shuffle`: its buffer holds every example as separate small tensors, and freeing a full one took
    5-14 s at the end of a fit on ML-100K (py-spy: `free` under `~ShuffleDatasetBase`); a buffer of at most a
    million also shuffled ML-25M only locally.

    Histories are gathered one batch at a time too, from each example's span of `known`: the same rows as
    `known.histories`, but an example holds two integers instead of `history_length` (at tens of millions of
    ratings a materialised [n, 20] history array and its int64 temporaries took gigabytes: docs/scale.md).

    Args:
        known: the ratings a history is read from (each example's user's ratings before its timestamp);
            None, or history_length 0, for no history input.
        history_ratings: also each history movie's stars (`history_rating`, NO_VALUE at padding).
        user_dropout: share of examples whose user_id is blanked, so that the out-of-vocabulary user (every
            user the model has not seen) learns to be answered from the history alone.
        movie_dropout: share of examples whose candidate movie_id is blanked (title and sampling probability
            kept), so that the out-of-vocabulary movie (one added to the catalogue since) learns to be placed
            by its title.
        passes: passes over `ratings`; None repeats them without end (the caller sets the steps per epoch).

    Raises:
        ValueError: no ratings to pass over without end (that dataset would never yield a batch).
    """
    columns = {
        "user_id": ratings["user_id"].to_numpy(dtype=np.int64),
        "timestamp": ratings["timestamp"].to_numpy(dtype=np.int64),
        "movie_row": catalogue_rows(data, ratings),
    }
    with_history = known is not None and history_length > 0
    if with_history:
        assert known is not None
        columns["history_start"], columns["history_end"] = known.spans_before(
            columns["user_id"], known_bound(columns["timestamp"], at_now=False)
        )
        # One PAD row stands in for an empty store, so that the (masked) gather always has a row to read.
        known_rows = tf.constant(known.movie_rows if len(known.movie_rows) else np.array([PAD], np.int32))
        stars = known.values if known.values is not None else np.full(len(known.movie_rows), NO_VALUE, np.float32)
        known_stars = tf.constant(stars if len(stars) else np.array([NO_VALUE], np.float32), dtype=tf.float32)
        newest_first = tf.range(1, history_length + 1, dtype=tf.int64)
    if passes is None and not len(ratings):
        raise ValueError("no training ratings: a dataset repeated without end would never yield a batch")
    held = {name: tf.constant(values) for name, values in columns.items()}
    count = tf.constant(len(ratings), dtype=tf.int64)

    def pass_batches(number: tf.Tensor) -> tf.data.Dataset:
        order = tf.range(count, dtype=tf.int64)
        if shuffle_seed is not None:
            seed = tf.stack([tf.constant(shuffle_seed, tf.int64), number])
            order = tf.random.experimental.stateless_shuffle(order, seed=seed)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    numbers = tf.data.Dataset.counter() if passes is None else tf.data.Dataset.range(passes)
    dataset = numbers.flat_map(pass_batches)
    movie_ids = tf.constant(vocab.movie_ids)
    padded_ids = tf.constant(np.concatenate([[""], vocab.movie_ids]))  # row + 1; PAD (-1) becomes ""
    titles = tf.constant(vocab.titles)
    genres = tf.constant(vocab.genres.astype(str))
    probabilities = tf.constant(vocab.movie_probability, dtype=tf.float32)

    def to_features(rows: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = {name: tf.gather(values, rows) for name, values in held.items()}
        user_id = tf.strings.as_string(batch["user_id"])
        if user_dropout > 0:
            dropped = tf.random.uniform(tf.shape(user_id), seed=shuffle_seed) < user_dropout
            user_id = tf.where(dropped, tf.constant(""), user_id)
        movie_id = tf.gather(movie_ids, batch["movie_row"])
        if movie_dropout > 0:
            blanked = tf.random.uniform(tf.shape(movie_id), seed=None if shuffle_seed is None else shuffle_seed + 1)
            movie_id = tf.where(blanked < movie_dropout, tf.constant(""), movie_id)
        features = {
            "user_id": user_id,
            "timestamp": batch["timestamp"],
            "movie_id": movie_id,
            "title": tf.gather(titles, batch["movie_row"]),
            "genres": tf.gather(genres, batch["movie_row"]),  # kept when the id is blanked, like the title
            "candidate_probability": tf.gather(probabilities, batch["movie_row"]),
            "movie_row": batch["movie_row"],  # the positive's catalogue row: the label of a full softmax
        }
        if with_history:  # UserRatings.histories, per batch: the latest movies before end, PAD before start
            index = batch["history_end"][:, None] - newest_first[None, :]
            present = index >= batch["history_start"][:, None]
            rows = tf.where(present, tf.gather(known_rows, tf.maximum(index, 0)), PAD)
            features["history"] = tf.gather(padded_ids, rows + 1)
            if history_ratings:
                features["history_rating"] = tf.where(present, tf.gather(known_stars, tf.maximum(index, 0)), NO_VALUE)
        return features

    dataset = dataset.map(to_features, num_parallel_calls=PARALLEL_BATCHES)
    # Under a multi-worker strategy each worker keeps its share of every batch (there are no files to shard).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False
    return dataset.prefetch(PARALLEL_BATCHES).with_options(options)


def candidate_features(vocab: Vocabularies, blank_ids: bool = False) -> dict[str, np.ndarray]:
    """Every movie's candidate-tower inputs, in catalogue order: movie_id, title and genres ("A|B"); a tower
    reads the ones it takes (`input_names`). With `blank_ids` every movie_id is "", the id movie_dropout
    trains and every movie the tower never saw reads, so each movie is placed by its content alone."""
    movie_ids = np.full(len(vocab.movie_ids), "", dtype=object) if blank_ids else vocab.movie_ids
    return {"movie_id": movie_ids, "title": vocab.titles, "genres": vocab.genres.astype(str)}


def candidates_dataset(vocab: Vocabularies, batch_size: int = 128, blank_ids: bool = False) -> tf.data.Dataset:
    """Every movie in catalogue order, batched for the candidate tower (`blank_ids`: see candidate_features)."""
    return tf.data.Dataset.from_tensor_slices(candidate_features(vocab, blank_ids)).batch(batch_size)
