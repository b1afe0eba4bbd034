"""The training input pipeline feeds the query tower the same histories that scoring and serving read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract.user_ratings import build_user_ratings, history_movie_ids
from training.config import TrainConfig
from training.dataset import build_vocabularies, catalogue_rows, ratings_dataset
from training.folds import prepare


def _fed(dataset: object) -> dict[str, np.ndarray]:
    batches = list(dataset)  # type: ignore[call-overload]
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def test_histories_built_per_batch_equal_the_user_ratings_histories(tiny_data_dir: Path) -> None:
    fold = prepare(TrainConfig(evaluate_temporal=False), tiny_data_dir).random
    vocab = build_vocabularies(fold.data, fold.train)
    dataset = ratings_dataset(
        fold.data, fold.train, vocab, 64, known=fold.known, history_length=5, history_ratings=True
    )
    fed = _fed(dataset)
    users, times = fold.train["user_id"].to_numpy(np.int64), fold.train["timestamp"].to_numpy(np.int64)
    rows, stars = fold.known.rated_histories(users, times, 5)
    expected = history_movie_ids(rows, vocab.movie_ids)
    np.testing.assert_array_equal(fed["history_rating"], stars)  # each history movie's stars, 0 at padding
    assert set(np.unique(stars[rows >= 0])) <= {1.0, 2.0, 3.0, 4.0, 5.0} and (stars[rows < 0] == 0).all()
    assert fed["history"].shape == (len(fold.train), 5)
    assert (fed["history"].astype(str) == expected).all()
    assert (expected != "").sum() > len(fold.train)  # most examples have several earlier movies to read
    assert fed["movie_id"].astype(str).tolist() == vocab.movie_ids[catalogue_rows(fold.data, fold.train)].tolist()


def test_no_history_input_without_a_length_and_padding_from_an_empty_store(tiny_data_dir: Path) -> None:
    fold = prepare(TrainConfig(evaluate_temporal=False), tiny_data_dir).random
    vocab = build_vocabularies(fold.data, fold.train)
    assert "history" not in _fed(ratings_dataset(fold.data, fold.train, vocab, 64, known=fold.known))
    empty = build_user_ratings(pd.DataFrame({"user_id": [], "timestamp": []}), np.zeros(0, np.int32))
    fed = _fed(ratings_dataset(fold.data, fold.train, vocab, 64, known=empty, history_length=3))
    assert fed["history"].shape == (len(fold.train), 3) and (fed["history"] == b"").all()


def test_movie_dropout_blanks_a_share_of_the_candidate_ids_and_keeps_their_titles(tiny_data_dir: Path) -> None:
    fold = prepare(TrainConfig(evaluate_temporal=False), tiny_data_dir).random
    vocab = build_vocabularies(fold.data, fold.train)
    fed = _fed(ratings_dataset(fold.data, fold.train, vocab, 64, shuffle_seed=3, movie_dropout=0.3))
    blank = fed["movie_id"].astype(str) == ""
    assert 0.2 < blank.mean() < 0.4
    # Not shuffled apart from the ids: each example keeps its own title and sampling probability.
    shuffled = _fed(ratings_dataset(fold.data, fold.train, vocab, 64, shuffle_seed=3))
    np.testing.assert_array_equal(fed["title"], shuffled["title"])
    np.testing.assert_array_equal(fed["candidate_probability"], shuffled["candidate_probability"])
    title_of = dict(zip(vocab.movie_ids.tolist(), vocab.titles.tolist(), strict=True))
    titles = [t.decode() for t in fed["title"].tolist()]
    kept = [(m, t) for m, t in zip(fed["movie_id"].astype(str), titles, strict=True) if m]
    assert kept and all(title_of[m] == t for m, t in kept)


def test_each_pass_is_a_new_seeded_permutation_of_every_example(tiny_data_dir: Path) -> None:
    fold = prepare(TrainConfig(evaluate_temporal=False), tiny_data_dir).random
    vocab = build_vocabularies(fold.data, fold.train)
    n = len(fold.train)
    in_order = _fed(ratings_dataset(fold.data, fold.train, vocab, 64))["timestamp"]
    np.testing.assert_array_equal(in_order, fold.train["timestamp"].to_numpy())  # no seed: the rows in order
    two = _fed(ratings_dataset(fold.data, fold.train, vocab, 64, shuffle_seed=5, passes=2))["timestamp"]
    first, second = two[:n], two[n:]
    assert len(two) == 2 * n
    for one_pass in (first, second):  # every example once a pass, shuffled
        np.testing.assert_array_equal(np.sort(one_pass), np.sort(in_order))
        assert not np.array_equal(one_pass, in_order)
    assert not np.array_equal(first, second)  # a new order each pass...
    again = _fed(ratings_dataset(fold.data, fold.train, vocab, 64, shuffle_seed=5, passes=2))["timestamp"]
    np.testing.assert_array_equal(two, again)  # ...the same for the same seed
    endless = iter(ratings_dataset(fold.data, fold.train, vocab, 64, shuffle_seed=5, passes=None))
    fed = np.concatenate([next(endless)["timestamp"].numpy() for _ in range(2 * -(-n // 64))])
    np.testing.assert_array_equal(fed, two)  # without end: the same passes, one after another


def test_an_endless_dataset_of_no_ratings_is_refused(tiny_data_dir: Path) -> None:
    fold = prepare(TrainConfig(evaluate_temporal=False), tiny_data_dir).random
    vocab = build_vocabularies(fold.data, fold.train)
    with pytest.raises(ValueError, match="no training ratings"):
        ratings_dataset(fold.data, fold.train.iloc[:0], vocab, 64, passes=None)
