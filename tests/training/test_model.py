"""Tower shapes and that training actually learns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from training.config import TrainConfig
from training.dataset import Vocabularies
from training.model import build_candidate_tower, build_query_tower

VOCAB = Vocabularies(
    user_ids=np.array(["1", "2", "3"]),
    movie_ids=np.array(["10", "20"]),
    titles=np.array(["Toy Story (1995)", "Heat (1995)"]),
    genres=np.array(["Animation|Comedy", "Crime"]),
    years=np.array([1995, 1995], dtype=np.int32),
    timestamp_min=880_000_000,
    timestamp_max=890_000_000,
    timestamp_mean=885_000_000.0,
    timestamp_variance=1e13,
    movie_probability=np.array([0.5, 0.5], dtype=np.float32),
)


@pytest.mark.parametrize("layers", [(32,), (16, 8), (12, 8, 4)])
def test_tower_width_is_the_last_layer_and_the_item_item_channel(layers: tuple[int, ...]) -> None:
    config = TrainConfig(layers=layers, embedding_dim=8, history_length=3, item_item_dim=5, item_item_prior=0)
    query = build_query_tower(VOCAB, config)
    candidate = build_candidate_tower(VOCAB, config)
    history = tf.constant([["20", "10", ""], ["", "", ""]])  # newest first, "" pads; an empty history is fine
    q = query(
        {
            "user_id": tf.constant(["1", "unknown"]),
            "timestamp": tf.constant([880_000_000, 0], tf.int64),
            "history": history,
        }
    )
    c = candidate(
        {
            "movie_id": tf.constant(["10", "20", "30"]),
            "title": tf.constant(["a", "b", "c"]),
            "genres": tf.constant(["Comedy", "Crime|Comedy", ""]),
        }
    )
    assert q.shape == (2, layers[-1] + 5) and c.shape == (3, layers[-1] + 5)
    dense = [layer for layer in query.get_layer("query_dense").layers]
    assert [layer.units for layer in dense] == list(layers)
    assert all(layer.activation.__name__ == "relu" for layer in dense[:-1])
    assert dense[-1].activation.__name__ == "linear"
    assert np.isfinite(q.numpy()).all()


def test_the_query_tower_clamps_time_and_reads_the_history() -> None:
    config = TrainConfig(layers=(8,), embedding_dim=8, history_length=2, item_item_prior=0)
    query = build_query_tower(VOCAB, config)

    def embed(timestamp: int, history: list[str]) -> np.ndarray:
        inputs = {"user_id": tf.constant(["1"]), "timestamp": tf.constant([timestamp], tf.int64)}
        return query({**inputs, "history": tf.constant([history])}).numpy()[0]

    end = VOCAB.timestamp_max
    np.testing.assert_array_equal(embed(end, ["10", ""]), embed(4_102_444_800, ["10", ""]))  # 2100 is the end
    np.testing.assert_array_equal(embed(VOCAB.timestamp_min, ["", ""]), embed(0, ["", ""]))
    assert not np.allclose(embed(end, ["10", ""]), embed(end, ["20", ""]))  # the history moves the query
    np.testing.assert_allclose(embed(end, ["10", "10"]), embed(end, ["10", ""]), rtol=1e-6)  # a mean, not a sum


def test_the_tutorial_preset_has_no_history_input() -> None:
    from training.config import build_config

    config = build_config("tutorial", layers=(8,))
    query = build_query_tower(VOCAB, config)
    assert sorted(query.input_names) == ["timestamp", "user_id"]
    # The tutorial's own time buckets and nothing of the levers, whatever the defaults become.
    assert (config.timestamp_buckets, config.item_item_dim, config.user_dropout) == (1000, 0, 0.0)
    assert query.get_layer("timestamp_embedding").input_dim == 1000


def test_training_loss_decreases(tiny_version_dir: Path) -> None:
    history = json.loads((tiny_version_dir / "training_history.json").read_text())
    assert len(history["loss"]) == 8 and np.isfinite(history["loss"]).all()
    # On ~8 batches an epoch, with user-id dropout and reshuffled in-batch negatives, one epoch's mean loss is
    # noisy (±5 here), so the last epoch need not be the lowest; training must still get below the first.
    assert min(history["loss"][1:]) < history["loss"][0] - 1.0
    assert history["held_out_epoch"] == [4, 8]


@pytest.mark.parametrize("with_user_id", [True, False], ids=["known user", "same history, unknown user"])
def test_model_learns_the_synthetic_taste_clusters(tiny_version_dir: Path, synth, with_user_id: bool) -> None:  # type: ignore[no-untyped-def]
    """Users of cluster c mostly rate genre c: asked now, as the service asks (user id and latest ratings), and
    as a new user with the same ratings would be, their scores for genre c must stand out.

    The comparison is cluster x genre mean scores with each genre's and each cluster's mean removed (the
    interaction), because a movie-side bias (a genre every user scores high) or a query norm says nothing about
    taste. Per user, 60 users on 8 epochs of ~1,000 ratings are too few for a steady threshold; per cluster
    (15 users each) the signal is steady over seeds. Each cluster's own genre must lead its row of the
    interaction (an untrained model manages all four by chance once in 256), and the clusters' top-10 lists
    must hold their own genre well above a quarter on average: lists that ignore the history (an untrained or
    a popularity-like model gives every user nearly the same one) average a quarter exactly, since the four
    clusters' own genres split the same list.
    """
    manifest = json.loads((tiny_version_dir / "manifest.json").read_text())
    assert manifest["config"]["epochs"] == 8
    query_model = tf.saved_model.load(str(tiny_version_dir / "query_model")).signatures["serving_default"]
    movies = pd.DataFrame(json.loads((tiny_version_dir / "movies.json").read_text()))
    embeddings = np.load(tiny_version_dir / "candidate_embeddings.npy")
    from tests.synth import GENRES

    users = np.arange(1, 61)
    length = manifest["query"]["history_length"]
    histories = []
    for user in users:  # the latest `length` movies, newest first, as seen.npz gives the server
        mine = synth.ratings[synth.ratings[:, 0] == user]
        newest = mine[np.argsort(-mine[:, 3], kind="stable")][:length, 1].astype(str).tolist()
        histories.append(newest + [""] * (length - len(newest)))
    q = query_model(
        user_id=tf.constant(users.astype(str) if with_user_id else [""] * 60),
        timestamp=tf.constant([int(time.time())] * 60, tf.int64),
        history=tf.constant(histories),
    )
    scores = q["embedding"].numpy() @ embeddings.T
    genre = np.array([GENRES.index(genres[0]) for genres in movies["genres"]])  # one genre per synthetic movie
    cluster = users % len(GENRES)
    means = np.array([[scores[cluster == c][:, genre == g].mean() for g in range(4)] for c in range(4)])
    interaction = means - means.mean(0, keepdims=True) - means.mean(1, keepdims=True) + means.mean()
    assert (np.diag(interaction) > 0).all(), interaction
    assert (interaction.argmax(axis=1) == np.arange(4)).all(), interaction
    top_10 = np.argsort(-scores, axis=1)[:, :10]
    own_share = np.array([(genre[top_10[cluster == c]] == c).mean() for c in range(4)])
    assert own_share.mean() >= 0.35, own_share
