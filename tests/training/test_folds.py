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
