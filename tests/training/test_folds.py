"""The folds each protocol is fit and scored on; validation folds never touch the test ratings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.config import TrainConfig
from training.dataset import split_ratings
from training.folds import _temporal_split, leave_one_out_fold, prepare

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


def test_stored_ratings_are_read_up_to_the_agreed_cutoff(tiny_data_dir: Path, tmp_path: Path, synth) -> None:  # type: ignore[no-untyped-def]
    """Workers of a cluster pass the same cutoff, so a rating stored after it is in nobody's data."""
    from contract.ratings import Rating, RatingsStore

    url = f"sqlite:///{tmp_path}/ratings.db"
    end = int(synth.ratings[:, 3].max())
    with RatingsStore(url) as store:
        store.create_schema()
        ids = store.add([Rating("1001", str(m), 4.0, end + m) for m in range(1, 11)])
        files = len(prepare(TrainConfig(), tiny_data_dir).data.ratings)
        newest = prepare(TrainConfig(), tiny_data_dir, store).data
        agreed = prepare(TrainConfig(), tiny_data_dir, store, ratings_cutoff_id=ids[3]).data
    assert newest.ratings_cutoff_id == ids[-1] and len(newest.ratings) == files + 10
    assert agreed.ratings_cutoff_id == ids[3] and agreed.num_stored == 4 and len(agreed.ratings) == files + 4
    assert sorted(agreed.ratings["stored_id"][agreed.ratings["stored_id"] > 0]) == ids[:4]


def test_leave_one_out_holds_out_each_users_latest_and_validation_the_one_before(tiny_data_dir: Path) -> None:
    """One held-out rating per user, the latest (no later rating of theirs in training), asked knowing only the
    ratings before it; the validation fold never sees the test ratings."""
    data = prepare(TrainConfig(evaluate=False), tiny_data_dir).data
    test_fold = leave_one_out_fold(TrainConfig(), data)
    assert test_fold.test is not None and test_fold.held_out is not None
    held = test_fold.test
    assert held["user_id"].is_unique and set(held["user_id"]) == set(data.ratings["user_id"])
    latest = data.ratings.groupby("user_id")["timestamp"].max()
    assert (held.set_index("user_id")["timestamp"] == latest.loc[held["user_id"]]).all()
    assert len(test_fold.train) + len(held) == len(data.ratings)
    known = test_fold.held_out.known
    ends_before = known.timestamps[test_fold.held_out.exclude_end - 1]
    has_history = test_fold.held_out.exclude_end > test_fold.held_out.exclude_start
    assert (ends_before[has_history] < held["timestamp"].to_numpy()[has_history]).all()
    validation = leave_one_out_fold(TrainConfig(evaluate_on="validation"), data)
    assert validation.test is not None
    assert not (_keys(validation.train) | _keys(validation.test)) & _keys(held)


def test_scored_histories_leave_out_disliked_ratings_which_stay_excluded(tiny_data_dir: Path) -> None:
    """Protocol T asks as the service does: a history reads no rating below history_min_rating, the exclusions
    still hold every earlier rating, and a query left with no history (and an unknown user) falls back."""
    prepared = prepare(TrainConfig(history_min_rating=3.0), tiny_data_dir)
    fold = prepared.temporal
    assert fold is not None and fold.test is not None and fold.held_out is not None
    assert fold.test_histories is not None and fold.test_history_ratings is not None
    read = fold.test_histories >= 0
    assert read.any() and (fold.test_history_ratings[read] >= 3.0).all()
    held_out, known = fold.held_out, fold.held_out.known
    excluded_stars = [known.values[s:e] for s, e in zip(held_out.exclude_start, held_out.exclude_end, strict=True)]
    assert any((stars < 3.0).any() for stars in excluded_stars)  # disliked earlier ratings are still excluded
    unknown = fold.known.positions(fold.test["user_id"].to_numpy()) < 0
    only_disliked = unknown & ~read.any(axis=1)
    assert (held_out.fallback == only_disliked).all()
    plain = prepare(TrainConfig(history_min_rating=0.0), tiny_data_dir).temporal
    assert plain is not None and plain.test_history_ratings is not None
    assert (plain.test_history_ratings[plain.test_histories >= 0] < 3.0).any()  # type: ignore[operator]
