"""The quality levers (issue 10): each one's shapes and behaviour, and a model with all of them that learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from contract.query_tower import QueryTower, max_difference, padded_histories, padded_ratings, probe_queries
from tests.conftest import TINY_TRAINING
from training.config import TrainConfig
from training.dataset import Vocabularies, candidate_features, release_years
from training.model import (
    MaskedMean,
    PositionalPool,
    TokenDropout,
    TwoTowerModel,
    build_candidate_tower,
    build_query_tower,
    year_one_hot,
)
from training.query_weights import UnmirroredTowerError, mirrored_arrays, query_tower_arrays

VOCAB = Vocabularies(
    user_ids=np.array(["1", "2", "3"]),
    movie_ids=np.array(["10", "20", "30"]),
    titles=np.array(["Toy Story (1995)", "Heat (1987)", "Untitled"]),
    genres=np.array(["Animation|Comedy", "Crime", ""]),
    years=np.array([1995, 1987, 0], dtype=np.int32),
    timestamp_min=880_000_000,
    timestamp_max=890_000_000,
    timestamp_mean=885_000_000.0,
    timestamp_variance=1e13,
    movie_probability=np.array([0.4, 0.4, 0.2], dtype=np.float32),
)
SMALL = dict(layers=(8,), embedding_dim=4, history_length=3, item_item_prior=0)  # the EASE prior: its own tests


def _masked(rows: int = 4, length: int = 3, dim: int = 5) -> tuple[tf.Tensor, tf.Tensor]:
    vectors = tf.constant(np.random.default_rng(0).normal(size=(rows, length, dim)), tf.float32)
    mask = tf.constant([[True, True, True], [True, False, False], [True, True, False], [False, False, False]])
    return vectors, mask


def test_positional_pooling_starts_as_the_masked_mean() -> None:
    vectors, mask = _masked()
    pool = PositionalPool(3, name="history_pool")
    pooled = pool(vectors, mask=mask).numpy()
    np.testing.assert_allclose(pooled, MaskedMean()(vectors, mask=mask).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(pooled[3], 0.0)  # no history: zeros
    [logits] = pool.trainable_weights
    assert logits.name == "history_pool/position_logits:0" and logits.shape == (3,)
    assert pool.non_trainable_weights == []


def test_positional_pooling_is_a_softmax_over_the_unmasked_positions() -> None:
    vectors, mask = _masked()
    pool = PositionalPool(3)
    pool.build(vectors.shape)
    logits = np.array([2.0, 0.5, -1.0], dtype=np.float32)
    pool.position_logits.assign(logits)
    weights = np.exp(logits)[None, :] * mask.numpy()
    weights = weights / np.maximum(weights.sum(1, keepdims=True), 1e-30)  # an empty row stays zeros
    expected = (vectors.numpy() * weights[..., None]).sum(1)
    np.testing.assert_allclose(pool(vectors, mask=mask).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pool(vectors, mask=mask).numpy()[1], vectors.numpy()[1, 0], rtol=1e-6)  # one kept


@pytest.mark.parametrize("pooling, present, absent", [("positional", "history_pool", "history_mean"),
                                                      ("mean", "history_mean", "history_pool")])  # fmt: skip
def test_the_query_tower_pools_the_history_as_configured(pooling: str, present: str, absent: str) -> None:
    tower = build_query_tower(VOCAB, TrainConfig(**SMALL, history_pooling=pooling))
    names = [layer.name for layer in tower.layers]
    assert present in names and absent not in names
    if pooling == "positional":
        [logits] = tower.get_layer("history_pool").weights
        assert logits.name.endswith("position_logits:0") and logits.shape == (3,) and logits.trainable
        np.testing.assert_array_equal(logits.numpy(), 0.0)


def _query_inputs(n: int = 3) -> dict[str, tf.Tensor]:
    return {
        "user_id": tf.constant(["1", "2", "unknown"][:n]),
        "timestamp": tf.constant([880_000_000, 885_000_000, 0][:n], tf.int64),
        "history": tf.constant([["20", "10", ""], ["", "", ""], ["30", "", ""]][:n]),
    }


def _candidate_inputs() -> dict[str, tf.Tensor]:
    return {
        "movie_id": tf.constant(["10", "20", "30", "99"]),
        "title": tf.constant(["a b", "c", "Untitled", "d"]),
        "genres": tf.constant(["Animation|Comedy", "Crime", "", "Crime"]),
    }


def test_normalized_towers_end_in_named_unit_normalization() -> None:
    config = TrainConfig(**SMALL, normalize_embeddings=True, temperature=0.1)
    query, candidate = build_query_tower(VOCAB, config), build_candidate_tower(VOCAB, config)
    assert query.layers[-1].name == "query_normalize" and candidate.layers[-1].name == "candidate_normalize"
    for tower, inputs in ((query, _query_inputs()), (candidate, _candidate_inputs())):
        np.testing.assert_allclose(np.linalg.norm(tower(inputs).numpy(), axis=1), 1.0, rtol=1e-5)
    plain = TrainConfig(**SMALL)
    names = [layer.name for layer in build_query_tower(VOCAB, plain).layers]
    names += [layer.name for layer in build_candidate_tower(VOCAB, plain).layers]
    assert "query_normalize" not in names and "candidate_normalize" not in names


@pytest.mark.parametrize(
    "recent, item_item, ratings, pooling",
    [
        (0, 0, False, "positional"),
        (2, 0, False, "positional"),
        (0, 6, False, "positional"),
        (0, 6, True, "positional"),
        (2, 0, True, "mean"),
    ],
)
def test_the_numpy_mirror_equals_a_positional_normalized_tower(
    recent: int, item_item: int, ratings: bool, pooling: str
) -> None:
    """The levers stay servable in NumPy: non-zero position logits, the newest movies one by one (recent), the
    item-item channel past the dense stack, the stars' per-level scales (negative ones too) and the unit
    normalisation are mirrored."""
    tf.keras.utils.set_random_seed(3)
    config = TrainConfig(
        **SMALL,
        history_pooling=pooling,
        normalize_embeddings=True,
        history_recent=recent,
        item_item_dim=item_item,
        history_ratings=ratings,
    )
    tower = build_query_tower(VOCAB, config)
    if pooling == "positional":
        tower.get_layer("history_pool").position_logits.assign([1.5, -0.5, 0.25])
    if item_item:
        tower.get_layer("item_item_pool").position_logits.assign([-1.0, 0.75, 2.0])
    if ratings:
        tower.get_layer("history_rating_scale").set_weights([np.array([[1.0], [-1.5], [-0.5], [0.2], [1.1], [2.0]])])
        if item_item:
            tower.get_layer("item_item_rating_scale").set_weights(
                [np.array([[0.5], [-2.0], [-1.0], [0.1], [1.0], [3.0]])]
            )
    arrays = query_tower_arrays(tower, config.query_spec)
    assert arrays.spec == config.query_spec and arrays.history_recent == recent
    assert QueryTower(arrays).dim == SMALL["layers"][-1] + item_item  # type: ignore[index]
    users, timestamps, histories, stars = probe_queries(arrays, VOCAB.movie_ids.tolist(), now=1_900_000_000, count=40)
    length = config.history_length
    inputs = {
        "user_id": tf.constant(users),
        "timestamp": tf.constant(timestamps, tf.int64),
        "history": tf.constant(padded_histories(histories, length)),
    }
    if ratings:
        inputs["history_rating"] = tf.constant(padded_ratings(stars, length), tf.float32)
    expected = tower(inputs).numpy()
    assert max_difference(expected, QueryTower(arrays)(users, timestamps, histories, stars)) < 1e-5
    assert mirrored_arrays(tower, config.query_spec, VOCAB.movie_ids.tolist()).spec == config.query_spec


def test_a_one_star_rating_moves_the_query_away_from_that_movie() -> None:
    """With the stars read, the same history rated 1 or 5 stars gives different queries, and a negative
    1-star scale turns the item-item channel's pooled vector around."""
    config = TrainConfig(**SMALL, history_pooling="positional", item_item_dim=6, history_ratings=True)
    tower = build_query_tower(VOCAB, config)
    for name in ("history_rating_scale", "item_item_rating_scale"):
        tower.get_layer(name).set_weights([np.array([[1.0], [-1.0], [-0.5], [0.0], [0.5], [1.0]])])
    arrays = query_tower_arrays(tower, config.query_spec)
    loved, hated = (QueryTower(arrays)(["1"], [885_000_000], [["10", "20"]], [[stars, stars]]) for stars in (5.0, 1.0))
    width = SMALL["layers"][-1]  # type: ignore[index]
    np.testing.assert_allclose(hated[0, width:], -loved[0, width:], rtol=1e-6)
    assert not np.allclose(loved[0, :width], hated[0, :width])


def test_a_tower_the_mirror_cannot_reproduce_is_an_export_error() -> None:
    """A layer the spec does not declare, or a spec other than the tower's, is refused with the remedy; the
    export never falls back to serving through the SavedModel."""
    config = TrainConfig(**SMALL, history_pooling="positional")
    tower = build_query_tower(VOCAB, config)
    wider = tf.keras.layers.Dense(3, name="extra_head")(tower.output)
    extended = tf.keras.Model(tower.inputs, wider)
    with pytest.raises(UnmirroredTowerError, match=r"\['extra_head'\] are not in its QueryTowerSpec"):
        query_tower_arrays(extended, config.query_spec)
    other = TrainConfig(**SMALL, history_pooling="mean").query_spec
    with pytest.raises(UnmirroredTowerError, match=r"\['history_pool'\] are not in its QueryTowerSpec"):
        query_tower_arrays(tower, other)


def test_the_item_item_channel_scores_history_movies_against_each_movie_past_the_dense_stacks() -> None:
    """With item_item_dim D both towers end in D more columns, so a score gains <pooled history vectors, the
    movie's own vector>; a movie the history holds gets the highest item-item term when the tables agree."""
    config = TrainConfig(**SMALL, history_pooling="positional", item_item_dim=6)
    query, candidate = build_query_tower(VOCAB, config), build_candidate_tower(VOCAB, config)
    width = SMALL["layers"][-1]  # type: ignore[index]
    assert query(_query_inputs()).shape == (3, width + 6) and candidate(_candidate_inputs()).shape == (4, width + 6)
    table = np.eye(6, dtype=np.float32)[[0, 0, 1, 2, 3]]  # "" row, the unknown movie, then "10", "20", "30"
    query.get_layer("item_item_embedding").set_weights([table])
    candidate.get_layer("movie_item_item_embedding").set_weights([table[1:]])  # unknown, "10", "20", "30"
    item_item = query(_query_inputs()).numpy()[:, width:] @ candidate(_candidate_inputs()).numpy()[:, width:].T
    np.testing.assert_allclose(item_item[0, :3], [0.5, 0.5, 0.0], atol=1e-6)  # history "20", "10": equal weights
    np.testing.assert_allclose(item_item[1], 0.0, atol=1e-6)  # no history: the channel is silent
    np.testing.assert_allclose(item_item[2, :3], [0.0, 0.0, 1.0], atol=1e-6)  # history "30"
    plain = TrainConfig(**{**SMALL, "history_length": 0}, item_item_dim=6)
    inputs = {name: value for name, value in _query_inputs().items() if name != "history"}
    assert build_query_tower(VOCAB, plain)(inputs).shape == (3, width)  # no history, no channel


def _loss_and_scores(movie_ids: list[str], **levers: object) -> tuple[float, np.ndarray]:
    config = TrainConfig(**SMALL, sampling_bias_correction=False)
    tf.keras.utils.set_random_seed(0)
    query, candidate = build_query_tower(VOCAB, config), build_candidate_tower(VOCAB, config)
    model = TwoTowerModel(query, candidate, **levers)  # type: ignore[arg-type]
    rows = [list(VOCAB.movie_ids).index(m) for m in movie_ids]
    movies = {name: tf.constant(column[rows]) for name, column in candidate_features(VOCAB).items()}
    features = {**_query_inputs(), **movies}
    candidates = candidate({name: movies[name] for name in candidate.input_names}).numpy()
    return float(model.compute_loss(features)), query(_query_inputs()).numpy() @ candidates.T


def _softmax_loss(scores: np.ndarray, keep: np.ndarray) -> float:
    """Sum over rows of -log softmax(row)[diagonal], over the kept logits of each row only."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_normalizer = np.log((np.exp(shifted) * keep).sum(axis=1))
    return float((log_normalizer - np.diag(shifted)).sum())


def test_removing_accidental_hits_drops_the_other_copies_of_the_positive() -> None:
    repeated = ["10", "10", "20"]  # the first two rows share a movie: each is the other's accidental negative
    plain, scores = _loss_and_scores(repeated)
    removed, _ = _loss_and_scores(repeated, remove_accidental_hits=True)
    everything = np.ones((3, 3), dtype=bool)
    no_copies = ~(np.equal.outer(repeated, repeated) & ~np.eye(3, dtype=bool))
    assert plain == pytest.approx(_softmax_loss(scores, everything), rel=1e-5)
    assert removed == pytest.approx(_softmax_loss(scores, no_copies), rel=1e-5)
    assert removed < plain
    distinct = ["10", "20", "30"]
    assert _loss_and_scores(distinct, remove_accidental_hits=True)[0] == pytest.approx(_loss_and_scores(distinct)[0])


def test_the_temperature_divides_the_logits() -> None:
    movies = ["10", "20", "30"]
    loss, scores = _loss_and_scores(movies, temperature=0.25)
    assert loss == pytest.approx(_softmax_loss(scores / 0.25, np.ones((3, 3), dtype=bool)), rel=1e-5)
    assert _loss_and_scores(movies, temperature=1.0)[0] == pytest.approx(_softmax_loss(scores, np.ones((3, 3), bool)))


def test_year_buckets_by_hand() -> None:
    years = year_one_hot(VOCAB.years, width=5)  # 1987 -> bucket 1, 1995 -> bucket 2, no year -> bucket 0
    np.testing.assert_array_equal(years, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    titles = pd.Series(["Toy Story (1995)", "unknown", "Kolya (Kolya) (1996)", "Misérables, Les (1995/I) ", "1984"])
    assert release_years(titles).tolist() == [1995, 0, 1996, 1995, 0]


def test_the_candidate_tower_reads_genres_from_its_input_and_year_from_movie_id() -> None:
    """Genres are an input, so a movie the vocabulary lacks ("99", added since) is placed by its genres too; the
    year is looked up by movie_id (and reaches a new movie's tower in its title)."""
    config = TrainConfig(**SMALL, candidate_genres=True, candidate_year=True)
    tower = build_candidate_tower(VOCAB, config)
    assert sorted(tower.input_names) == ["genres", "movie_id", "title"]
    inputs = {**_candidate_inputs(), "genres": tf.constant([*VOCAB.genres, "Comedy|Western"])}
    features = tf.keras.Model(tower.inputs, tower.get_layer("candidate_features").output)
    assert features(inputs).shape == (4, 4 * 4)  # id, title, genres, year: embedding_dim each
    genres = tf.keras.Model(tower.inputs, tower.get_layer("movie_genres").output)(inputs).numpy()
    # Columns Animation, Comedy, Crime: 1/k on each of k genres, zeros for none; "99" gets its one known genre
    # (Western is not among the columns).
    np.testing.assert_array_equal(genres, [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]])
    trainable = {w.name.split("/")[0] for w in tower.trainable_weights}
    assert {"genre_embedding", "year_embedding"} <= trainable and "movie_year" not in trainable
    assert tower(inputs).shape == (4, 8 + config.item_item_dim)
    other = {**inputs, "genres": tf.constant(["Crime"] * 4)}  # the genres alone change an embedding
    unchanged = np.isclose(tower(inputs).numpy(), tower(other).numpy()).all(axis=1)
    assert unchanged.tolist() == [False, True, False, False]  # row 1 was Crime already


def test_a_model_with_every_lever_beats_most_popular_and_exports(tiny_data_dir: Path, tmp_path: Path) -> None:
    """On the planted taste clusters; the export (candidate SavedModel included) must accept the new towers."""
    from training.train import train_versions

    levers = dict(
        history_pooling="positional",
        remove_accidental_hits=True,
        normalize_embeddings=True,
        temperature=0.1,
        candidate_genres=True,
        candidate_year=True,
    )
    config = TrainConfig(**{**TINY_TRAINING, **levers}, refit=False)
    trained = train_versions([config], tiny_data_dir, tmp_path / "models", progress=False)[0]
    model, popular = trained.metrics.model, trained.metrics.most_popular
    for protocol in ("A", "B", "T"):
        assert model[protocol]["top_10"] > popular[protocol]["top_10"], protocol
    embeddings = np.load(trained.version_dir / "candidate_embeddings.npy")
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_title_token_dropout_trains_the_unknown_word_and_leaves_inference_alone() -> None:
    """While training, about `rate` of the words become the out-of-vocabulary id (1); padding (0) and words
    already unknown stay; at inference nothing changes."""
    tokens = tf.constant(np.tile([[5, 9, 1, 0, 0]], (4000, 1)), tf.int64)
    layer = TokenDropout(0.25)
    np.testing.assert_array_equal(layer(tokens).numpy(), tokens.numpy())
    np.testing.assert_array_equal(layer(tokens, training=False).numpy(), tokens.numpy())
    tf.random.set_seed(0)
    dropped = layer(tokens, training=True).numpy()
    np.testing.assert_array_equal(dropped[:, 2:], tokens.numpy()[:, 2:])
    assert set(np.unique(dropped[:, :2])) == {1, 5, 9}
    assert abs((dropped[:, :2] == 1).mean() - 0.25) < 0.02
    config = TrainConfig(**SMALL, title_token_dropout=0.25)
    tower = build_candidate_tower(VOCAB, config)
    assert tower.get_layer("title_token_dropout").rate == 0.25
    # Inference is the tower without the layer: the same weights give the same embeddings.
    plain = build_candidate_tower(VOCAB, TrainConfig(**SMALL))
    plain.set_weights(tower.get_weights())
    np.testing.assert_allclose(plain(_candidate_inputs()).numpy(), tower(_candidate_inputs()).numpy(), rtol=1e-6)
