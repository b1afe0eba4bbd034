"""The folds each protocol is fit and scored on; validation folds never touch the test ratings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.config import TrainConfig
from training.dataset import split_ratings
from training.train import _temporal_split, prepare

KEY = ["user_id", "movie_id", "timestamp"]


def _keys(frame: pd.DataFrame) -> set[tuple[int, int, int]]:
    return set(map(tuple, frame[KEY].to_numpy().tolist()))


def test_validation_folds_are_carved_from_training_ratings_only(tiny_data_dir: Path) -> None:
    config = TrainConfig(evaluate_on="validation")
    prepared = prepare(config, tiny_data_dir)
    ratings = prepared.data.ratings
    random_test = _keys(split_ratings(ratings, "random", config.test_fraction, config.seed).test)
    temporal_test = _keys(_temporal_split(ratings, config.test_fraction, None)[1])
    for fold, test in ((prepared.random, random_test), (prepared.temporal, temporal_test)):
        assert fold is not None and fold.test is not None
        assert len(fold.test) > 0 and not (_keys(fold.train) | _keys(fold.test)) & test
        assert fold.held_out is not None and fold.held_out.known.movie_rows.size == len(fold.train) + (
            len(fold.test) if fold is prepared.temporal else 0
        )
    scored = prepare(TrainConfig(), tiny_data_dir)
    assert scored.random.test is not None and _keys(scored.random.test) == random_test  # the default scores test


def test_a_large_catalogue_scores_fewer_held_out_ratings(tiny_data_dir: Path) -> None:
    """Scoring costs queries x movies, so eval_max_cells caps the held-out ratings scored, a sample of them."""
    full = prepare(TrainConfig(), tiny_data_dir)
    movies = len(full.data.movies)
    capped = prepare(TrainConfig(eval_max_cells=movies * 100), tiny_data_dir)
    assert full.random.test is not None and capped.random.test is not None and len(full.random.test) > 100
    assert len(capped.random.test) == 100 and _keys(capped.random.test) <= _keys(full.random.test)
    assert capped.temporal is not None and capped.temporal.test is not None and len(capped.temporal.test) == 100
    assert capped.random.held_out is not None and len(capped.random.held_out) == 100
