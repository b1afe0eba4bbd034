"""The fixed EASE prior of the item-item channel: its arithmetic, its planted neighbours, and towers that carry it
(shapes, the learned gain, unknown movies, the NumPy mirror)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from contract.query_tower import QueryTower, QueryTowerArrays, max_difference, padded_histories, probe_queries
from contract.user_ratings import UserRatings
from tests.training.test_levers import SMALL, VOCAB
from training.config import TrainConfig
from training.item_item_prior import gram_matrix, item_item_prior, low_rank
from training.model import build_candidate_tower, build_model, build_query_tower
from training.query_weights import mirrored_arrays, query_tower_arrays


def _ratings(rows: list[list[int]]) -> UserRatings:
    """One user per list of movie rows, oldest first."""
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    movies = np.array([m for r in rows for m in r], dtype=np.int64)
    return UserRatings(np.arange(len(rows)), indptr, movies, np.arange(len(movies), dtype=np.int64))


def _planted(users: int = 60, seed: int = 0) -> UserRatings:
    """Six movies in two families, {0, 1, 2} and {3, 4, 5}: each user rates two movies of one family."""
    rng = np.random.default_rng(seed)
    return _ratings([list(rng.choice(3, size=2, replace=False) + 3 * (u % 2)) for u in range(users)])


def test_the_gram_matrix_counts_co_raters_over_the_chosen_movies_only() -> None:
    known = _ratings([[0, 1, 2], [1, 2], [2, 3]])
    dense = np.zeros((3, 4))
    for user, movies in enumerate([[0, 1, 2], [1, 2], [2, 3]]):
        dense[user, movies] = 1
    np.testing.assert_array_equal(gram_matrix(known, np.arange(4)), dense.T @ dense)
    np.testing.assert_array_equal(gram_matrix(known, np.array([1, 3])), (dense.T @ dense)[np.ix_([1, 3], [1, 3])])


def test_the_randomized_low_rank_factors_are_as_good_as_a_full_svd() -> None:
    weights = np.random.default_rng(2).normal(size=(80, 80)) @ np.diag(0.9 ** np.arange(80))
    left, right = low_rank(weights, 10, seed=0)
    assert left.shape == right.shape == (80, 10)
    u, s, vt = np.linalg.svd(weights)
    best = np.linalg.norm(weights - (u[:, :10] * s[:10]) @ vt[:10])
    assert np.linalg.norm(weights - left @ right.T) <= best * 1.01
    full_left, full_right = low_rank(weights, 80, seed=0)
    np.testing.assert_allclose(full_left @ full_right.T, weights, atol=1e-9)


def test_the_prior_scores_a_movies_planted_family_above_the_other_family() -> None:
    prior = item_item_prior(_planted(), num_movies=7, rank=4, lam=1.0, max_movies=100, seed=0)
    assert prior.query.shape == prior.candidate.shape == (7, 4) and prior.rank == 4
    scores = prior.query @ prior.candidate.T
    for movie in range(6):
        family = {0, 1, 2} if movie < 3 else {3, 4, 5}
        siblings = sorted(family - {movie})
        others = sorted({0, 1, 2, 3, 4, 5} - family)
        assert scores[movie, siblings].min() > scores[movie, others].max()
    np.testing.assert_array_equal(prior.query[6], 0.0)  # never rated: no prior
    np.testing.assert_array_equal(prior.candidate[6], 0.0)


def test_the_prior_covers_only_the_most_rated_movies_and_is_scaled_to_unit_spread() -> None:
    known = _ratings([[0, 1, 2, 3], [0, 1, 2], [0, 1], [0, 4], [1, 2, 4]] * 6)
    prior = item_item_prior(known, num_movies=5, rank=3, lam=1.0, max_movies=3, seed=0)
    np.testing.assert_array_equal(prior.query[[3, 4]], 0.0)  # 3 and 4 are the least rated
    assert np.abs(prior.query[:3]).sum() > 0
    full = np.stack([prior.query[np.array(r)].mean(0) for r in ([0, 1, 2, 3], [0, 1, 2], [0, 1], [0, 4], [1, 2, 4])])
    assert (full @ prior.candidate.T).std(axis=1).mean() == pytest.approx(1.0, rel=1e-5)


PRIOR = item_item_prior(_ratings([[0, 1], [0, 1], [1, 2], [2, 0]]), num_movies=3, rank=2, lam=1.0, max_movies=3, seed=0)
PRIOR_VOCAB = dataclasses.replace(VOCAB, item_item_prior=PRIOR)


@pytest.mark.parametrize("learned", [0, 6])
def test_towers_carry_the_prior_as_fixed_columns_scaled_by_a_learned_gain(learned: int) -> None:
    """The last `rank` columns of both towers are the prior: a history's pooled query rows times exp(gain)
    against the movie's candidate row; not trainable apart from the gain; an unknown movie's row is zeros."""
    config = TrainConfig(
        **{**SMALL, "item_item_prior": 2},
        history_pooling="positional",
        item_item_dim=learned,
        item_item_prior_gain=None,
        item_item_prior_in_training=True,
    )
    query, candidate = build_query_tower(PRIOR_VOCAB, config), build_candidate_tower(PRIOR_VOCAB, config)
    width = SMALL["layers"][-1] + learned  # type: ignore[operator]
    query.get_layer("item_item_prior_gain").log_gain.assign(np.log(3.0))
    queries = query({**_inputs(), "history": tf.constant([["20", "10", ""], ["", "", ""], ["30", "99", ""]])})
    movies = candidate(
        {
            "movie_id": tf.constant(["10", "20", "30", "99"]),
            "title": tf.constant(["a", "b", "c", "d"]),
            "genres": tf.constant(["", "", "", ""]),
        }
    ).numpy()
    assert queries.shape == (3, width + 2) and movies.shape == (4, width + 2)
    np.testing.assert_allclose(movies[:3, width:], PRIOR.candidate, rtol=1e-6)
    np.testing.assert_array_equal(movies[3, width:], 0.0)  # an unknown movie has no prior
    pooled = queries.numpy()[:, width:]
    np.testing.assert_allclose(pooled[0], 3.0 * PRIOR.query[[1, 0]].mean(0), rtol=1e-5)
    np.testing.assert_array_equal(pooled[1], 0.0)  # no history
    np.testing.assert_allclose(pooled[2], 3.0 * PRIOR.query[2] / 2, rtol=1e-5)  # the unknown movie pools zeros
    trainable = {w.name.split("/")[0] for w in query.trainable_weights + candidate.trainable_weights}
    assert "item_item_prior_gain" in trainable
    assert not {"item_item_prior", "movie_item_item_prior"} & trainable


def test_a_tower_with_the_prior_is_mirrored_in_numpy_and_its_spec_round_trips() -> None:
    tf.keras.utils.set_random_seed(5)
    config = TrainConfig(**{**SMALL, "item_item_prior": 2}, history_pooling="positional", item_item_dim=6)
    tower = build_query_tower(PRIOR_VOCAB, config)
    tower.get_layer("item_item_prior_gain").log_gain.assign(0.7)
    tower.get_layer("item_item_pool").position_logits.assign([-1.0, 0.75, 2.0])
    arrays = query_tower_arrays(tower, config.query_spec)
    assert arrays.spec == config.query_spec and arrays.item_item_prior == 2
    assert QueryTowerArrays.from_arrays(arrays.to_arrays()).spec == config.query_spec
    users, timestamps, histories, _ = probe_queries(arrays, VOCAB.movie_ids.tolist(), now=1_900_000_000, count=40)
    inputs = {
        "user_id": tf.constant(users),
        "timestamp": tf.constant(timestamps, tf.int64),
        "history": tf.constant(padded_histories(histories, config.history_length)),
    }
    assert max_difference(tower(inputs).numpy(), QueryTower(arrays)(users, timestamps, histories)) < 1e-5
    assert mirrored_arrays(tower, config.query_spec, VOCAB.movie_ids.tolist()).item_item_prior == 2


def test_a_prior_without_the_vocabularies_ease_tables_is_refused() -> None:
    with pytest.raises(ValueError, match="EASE prior"):
        build_query_tower(VOCAB, TrainConfig(**{**SMALL, "item_item_prior": 2}))


def _inputs() -> dict[str, tf.Tensor]:
    return {"user_id": tf.constant(["1", "2", "x"]), "timestamp": tf.constant([880_000_000] * 3, tf.int64)}


def test_a_prior_kept_out_of_training_is_absent_while_training_and_joins_at_inference() -> None:
    config = TrainConfig(
        **{**SMALL, "item_item_prior": 2}, item_item_dim=0, item_item_prior_gain=2.0, item_item_prior_in_training=False
    )
    query = build_query_tower(PRIOR_VOCAB, config)
    inputs = {**_inputs(), "history": tf.constant([["20", "10", ""], ["", "", ""], ["30", "", ""]])}
    width = SMALL["layers"][-1]  # type: ignore[index]
    assert query(inputs, training=True).shape == (3, width)  # nothing looked up, pooled or multiplied
    np.testing.assert_allclose(query(inputs).numpy()[2, width:], 2.0 * PRIOR.query[2], rtol=1e-6)
    assert not query.get_layer("item_item_prior_gain").trainable_weights  # a fixed gain is not learned
    with pytest.raises(ValueError, match="set its gain"):
        TrainConfig(**{**SMALL, "item_item_prior": 2}, item_item_prior_gain=None, item_item_prior_in_training=False)


def test_a_prior_over_liked_ratings_only_does_not_learn_what_people_disliked() -> None:
    """Every user loves two movies of their family and gives movie 3 or 0 (the other family's first) 1 star:
    over every rating the prior links the families; over ratings of 4 stars or more it does not."""
    rng = np.random.default_rng(0)
    rows, stars = [], []
    for user in range(60):
        family = user % 2
        loved = list(rng.choice(3, size=2, replace=False) + 3 * family)
        rows.append([*loved, 3 * (1 - family)])
        stars.append([5.0, 5.0, 1.0])
    every = _ratings(rows)
    known = dataclasses.replace(every, values=np.array([s for r in stars for s in r], dtype=np.float32))
    cross = {}
    for min_rating in (0.0, 4.0):
        prior = item_item_prior(known.read_as_history(min_rating), 7, rank=6, lam=1.0, max_movies=100, seed=0)
        scores = prior.query @ prior.candidate.T
        cross[min_rating] = scores[1, 3] - scores[1, 4]  # movie 1's family-0 fans: disliked 3 against unrated 4
    assert cross[0.0] > 0.05 and abs(cross[4.0]) < 1e-6


def test_a_popularity_penalty_lets_the_rare_follower_outrank_the_popular_one() -> None:
    """Movie 2's fans mostly also rate movie 0, which 70 users rate, and a few rate movie 1, which only they
    rate: plain EASE offers movie 0 first after movie 2, a penalty of count^-0.5 offers movie 1."""
    known = _ratings([[2, 0]] * 40 + [[2, 1]] * 5 + [[0, 3]] * 30)
    first = {}
    for penalty in (0.0, 0.5):
        prior = item_item_prior(known, 4, rank=4, lam=1.0, max_movies=10, seed=0, popularity=penalty)
        scores = prior.query[2] @ prior.candidate.T
        first[penalty] = int(np.argmax(scores))
    assert first == {0.0: 0, 0.5: 1}


def test_a_prior_that_no_rating_reaches_is_zeros() -> None:
    """Every rating under the prior's stars (a small or harsh catalogue): no EASE to fit, the columns stay zeros."""
    known = dataclasses.replace(_ratings([[0, 1], [1, 2]]), values=np.array([1.0, 2.0, 3.0, 2.0], np.float32))
    prior = item_item_prior(known.read_as_history(4.0), 4, rank=2, lam=1.0, max_movies=10, seed=0)
    assert prior.query.shape == prior.candidate.shape == (4, 2)
    assert not prior.query.any() and not prior.candidate.any()


def test_a_prior_kept_out_of_training_leaves_the_loss_as_without_it() -> None:
    """While training both towers leave its columns out, so the loss is the loss of the same towers without a
    prior; trained with the prior, its columns count."""
    config = TrainConfig(**{**SMALL, "item_item_prior": 2}, item_item_dim=6, sampling_bias_correction=False)
    features = {
        **_inputs(),
        "history": tf.constant([["20", "10", ""], ["30", "", ""], ["10", "", ""]]),
        "movie_id": tf.constant(["10", "30", "20"]),
        "title": tf.constant(["a", "b", "c"]),
        "genres": tf.constant(["", "", ""]),
    }
    losses = {}
    for name, update in (
        ("kept out", {}),
        ("none", {"item_item_prior": 0}),
        ("in training", {"item_item_prior_in_training": True}),
    ):
        tf.keras.utils.set_random_seed(0)  # the same initial learned weights in each
        model = build_model(PRIOR_VOCAB, config.model_copy(update=update))[0]
        candidate = model.candidate_tower({k: features[k] for k in model.candidate_tower.input_names}, training=True)
        assert candidate.shape[1] == SMALL["layers"][-1] + 6 + (2 if name == "in training" else 0)  # type: ignore[index]
        losses[name] = float(model.compute_loss(features, training=True))
    assert losses["kept out"] == pytest.approx(losses["none"], rel=1e-6)
    assert losses["in training"] != pytest.approx(losses["none"], rel=1e-3)
