"""The self-attention history encoder (issue 20): masks, the NumPy mirror, a planted order, and the full softmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from contract.history_encoder import EncoderArrays, encoder_weight_shapes
from contract.query_tower import QueryTower, QueryTowerArrays, max_difference, padded_histories, padded_ratings
from contract.query_tower import probe_queries as probes
from tests.conftest import TINY_TRAINING
from tests.training.test_levers import SMALL, VOCAB
from training.config import TrainConfig
from training.dataset import candidate_features
from training.history_encoder import HistoryEncoder
from training.model import TwoTowerModel, build_candidate_tower, build_query_tower
from training.query_weights import mirrored_arrays, query_tower_arrays
from training.train import train_versions


def _randomised(tower: tf.keras.Model, seed: int) -> None:
    """Every encoder weight drawn at random (norms and biases included), so the mirror is checked off the
    initial values too."""
    rng = np.random.default_rng(seed)
    encoder = tower.get_layer("history_encoder")
    for variable in encoder.w.values():
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype(np.float32))


@pytest.mark.parametrize(
    "blocks, heads, ratings, item_item",
    [(1, 1, False, 0), (2, 2, False, 0), (1, 2, True, 0), (2, 1, True, 6)],
)
def test_the_numpy_mirror_equals_the_attention_tower(blocks: int, heads: int, ratings: bool, item_item: int) -> None:
    """On probe queries (empty, short, full, over-long and unknown-movie histories, every star level), the
    NumPy forward pass of query_weights.npz answers as the Keras tower does, and the file round-trips."""
    tf.keras.utils.set_random_seed(5)
    config = TrainConfig(
        **SMALL,
        history_pooling="attention",
        attention_blocks=blocks,
        attention_heads=heads,
        history_ratings=ratings,
        item_item_dim=item_item,
    )
    tower = build_query_tower(VOCAB, config)
    _randomised(tower, seed=blocks * 10 + heads)
    arrays = query_tower_arrays(tower, config.query_spec)
    assert arrays.spec == config.query_spec
    users, timestamps, histories, stars = probes(arrays, VOCAB.movie_ids.tolist(), now=1_900_000_000, count=40)
    inputs = {
        "user_id": tf.constant(users),
        "timestamp": tf.constant(timestamps, tf.int64),
        "history": tf.constant(padded_histories(histories, config.history_length)),
    }
    if ratings:
        inputs["history_rating"] = tf.constant(padded_ratings(stars, config.history_length), tf.float32)
    expected = tower(inputs).numpy()
    assert max_difference(expected, QueryTower(arrays)(users, timestamps, histories, stars)) < 1e-5
    reread = QueryTowerArrays.from_arrays(arrays.to_arrays())
    assert reread.spec == config.query_spec
    assert max_difference(expected, QueryTower(reread)(users, timestamps, histories, stars)) < 1e-5
    assert mirrored_arrays(tower, config.query_spec, VOCAB.movie_ids.tolist()).spec == config.query_spec


def test_padding_is_ignored_and_an_empty_history_encodes_to_zeros() -> None:
    """The newest position's output depends on the present movies only: whatever sits in a padded slot changes
    nothing, and a history with nothing present encodes to zeros."""
    encoder = HistoryEncoder(length=4, heads=2, blocks=2, dropout=0.0, ratings=False)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 4, 6)).astype(np.float32)
    mask = np.array([[True, True, False, False], [True, True, False, False], [False] * 4])
    noisy = vectors.copy()
    noisy[1, 2:] = rng.normal(size=(2, 6))
    noisy[1, :2] = vectors[0, :2]
    out = encoder(tf.constant(noisy), mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(out[1], encoder(tf.constant(vectors), mask=tf.constant(mask)).numpy()[0], atol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)
    names = [variable.name.split("/")[-1].split(":")[0] for variable in encoder.weights]
    assert names == list(encoder_weight_shapes(4, 6, 2, 6, ratings=False))


def test_the_star_level_changes_the_encoding_of_the_same_history() -> None:
    """With the stars read, the same movies rated 1 or 5 stars are different inputs, so different queries."""
    config = TrainConfig(**SMALL, history_pooling="attention", history_ratings=True)
    tower = build_query_tower(VOCAB, config)
    _randomised(tower, seed=1)
    mirror = QueryTower(query_tower_arrays(tower, config.query_spec))
    loved, hated = (mirror(["1"], [885_000_000], [["10", "20"]], [[stars, stars]]) for stars in (5.0, 1.0))
    assert not np.allclose(loved, hated)


def test_encoder_arrays_that_are_not_the_declared_weights_are_refused() -> None:
    shapes = encoder_weight_shapes(3, 4, 1, 4, ratings=False)
    weights = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    EncoderArrays(weights, heads=2).check()
    with pytest.raises(ValueError, match="do not divide"):
        EncoderArrays(weights, heads=3).check()
    with pytest.raises(ValueError, match="not the declared"):
        EncoderArrays({k: v for k, v in weights.items() if k != "block0_key_bias"}, heads=1).check()


def test_the_full_softmax_is_cross_entropy_over_every_movie() -> None:
    """loss "full_softmax": each example's loss is -log softmax over the whole catalogue at its movie's row."""
    config = TrainConfig(**SMALL, sampling_bias_correction=False)
    tf.keras.utils.set_random_seed(0)
    query, candidate = build_query_tower(VOCAB, config), build_candidate_tower(VOCAB, config)
    catalogue = candidate_features(VOCAB)
    model = TwoTowerModel(query, candidate, temperature=0.5, catalogue=catalogue)
    features = {
        "user_id": tf.constant(["1", "2"]),
        "timestamp": tf.constant([885_000_000, 886_000_000], tf.int64),
        "history": tf.constant([["20", "", ""], ["", "", ""]]),
        "movie_row": tf.constant([2, 0], tf.int32),
    }
    scores = (
        query({k: features[k] for k in query.input_names}).numpy()
        @ candidate({name: tf.constant(catalogue[name]) for name in candidate.input_names}).numpy().T
        / 0.5
    )
    shifted = scores - scores.max(axis=1, keepdims=True)
    expected = np.log(np.exp(shifted).sum(axis=1)) - shifted[[0, 1], [2, 0]]
    assert float(model.compute_loss(features)) == pytest.approx(float(expected.sum()), rel=1e-5)


def test_attention_learns_an_order_that_mean_pooling_cannot_see(tmp_path: Path) -> None:
    """Planted: users who rated A then X next rate B; users who rated X then A next rate C. The two histories
    hold the same movies, so a mean over them is the same query; the encoder reads which came last."""
    movies = np.array(["1", "2", "3", "4"])  # A, X, B, C
    vocab = VOCAB.__class__(
        **{
            **VOCAB.__dict__,
            "movie_ids": movies,
            "titles": np.array(["a", "x", "b", "c"]),
            "genres": np.array(["", "", "", ""]),
            "years": np.zeros(4, np.int32),
            "movie_probability": np.full(4, 0.25, np.float32),
        }
    )
    histories = [["2", "1"], ["1", "2"]] * 64  # newest first: A then X, or X then A
    targets = [2, 3] * 64
    features = {
        "user_id": tf.constant([""] * len(targets)),
        "timestamp": tf.constant([885_000_000] * len(targets), tf.int64),
        "history": tf.constant(padded_histories(histories, 3)),
        "movie_row": tf.constant(targets, tf.int32),
        "movie_id": tf.constant(movies[targets]),
        "title": tf.constant(["b", "c"] * 64),
    }
    ranked = {}
    for pooling in ("mean", "attention"):
        tf.keras.utils.set_random_seed(0)
        config = TrainConfig(
            **SMALL,
            history_pooling=pooling,
            item_item_dim=0,
            attention_dropout=0.0,
            user_dropout=0.0,
            candidate_genres=False,  # order is the question; the movies' titles tell them apart
        )
        query, candidate = build_query_tower(vocab, config), build_candidate_tower(vocab, config)
        model = TwoTowerModel(query, candidate, catalogue={"movie_id": movies, "title": vocab.titles})
        model.compile(optimizer=tf.keras.optimizers.Adam(0.03))
        model.fit(tf.data.Dataset.from_tensor_slices(features).batch(32), epochs=60, verbose=0)
        inputs = {k: features[k][:2] for k in query.input_names}
        every = candidate({"movie_id": tf.constant(movies), "title": tf.constant(vocab.titles)}).numpy()
        scores = query(inputs).numpy() @ every.T
        ranked[pooling] = scores[:, 2:].argmax(axis=1)  # B (0) or C (1) for each order
    assert ranked["attention"].tolist() == [0, 1]
    assert ranked["mean"][0] == ranked["mean"][1]


def test_a_model_with_the_encoder_trains_beats_most_popular_and_exports(tiny_data_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        **{**TINY_TRAINING, "history_pooling": "attention", "loss": "full_softmax", "history_ratings": True},
        refit=False,
    )
    trained = train_versions([config], tiny_data_dir, tmp_path / "models", progress=False)[0]
    for protocol in ("A", "B", "T"):
        assert trained.metrics.model[protocol]["top_10"] > trained.metrics.most_popular[protocol]["top_10"], protocol
    assert (trained.version_dir / "query_weights.npz").is_file()
