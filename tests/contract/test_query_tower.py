"""The query tower as arrays: the file round trip, the shape checks and each branch of the NumPy forward pass.

That the arrays reproduce a trained SavedModel is proved where one exists: tests/training/test_export.py and
tests/service/test_trained_version.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from contract.manifest import VersionError
from contract.query_tower import (
    QueryTower,
    QueryTowerArrays,
    max_difference,
    probe_queries,
    read_query_weights,
    write_query_weights,
)


def _arrays(
    history_length: int = 3, pooling: str = "mean", normalize: bool = False, recent: int = 0, item_item: int = 0
) -> QueryTowerArrays:
    rng = np.random.default_rng(1)
    e = 4
    history = {}
    if history_length:
        history = {
            "history_length": history_length,
            "history_vocabulary": np.array(["", "[UNK]", "m1", "m2", "m3"]),
            "history_oov": 1,
            "history_embedding": rng.normal(size=(5, e)).astype(np.float32),
            "history_pooling": pooling,
            "history_position_logits": rng.normal(size=history_length).astype(np.float32)
            if pooling == "positional"
            else None,
            "history_recent": recent,
            "history_recent_embedding": rng.normal(size=(5, e)).astype(np.float32) if recent else None,
        }
        if item_item:
            history["item_item_embedding"] = rng.normal(size=(5, item_item)).astype(np.float32)
            history["item_item_position_logits"] = rng.normal(size=history_length).astype(np.float32)
    width = 2 * e + 1 + (e + recent * e if history_length else 0)
    return QueryTowerArrays(
        user_vocabulary=np.array(["[UNK]", "u1", "u2"]),
        user_oov=0,
        user_embedding=rng.normal(size=(3, e)).astype(np.float32),
        timestamp_low=1000,
        timestamp_high=2000,
        timestamp_boundaries=np.array([1250, 1500, 1750], dtype=np.float32),
        timestamp_embedding=rng.normal(size=(4, e)).astype(np.float32),
        timestamp_mean=np.float32(1500),
        timestamp_variance=np.float32(10_000),
        dense_kernels=(rng.normal(size=(width, 6)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)),
        dense_biases=(rng.normal(size=6).astype(np.float32), rng.normal(size=2).astype(np.float32)),
        dense_relu=(True, False),
        normalize=normalize,
        **history,  # type: ignore[arg-type]
    )


def _by_hand(a: QueryTowerArrays, user: str, timestamp: int, history: list[str]) -> np.ndarray:
    """The tower for one query, written out loop by loop as the docstring of contract/query_tower.py says."""
    users = a.user_vocabulary.tolist()
    user_vector = a.user_embedding[users.index(user) if user in users else a.user_oov]
    t = min(max(timestamp, a.timestamp_low), a.timestamp_high)
    bucket = sum(1 for edge in a.timestamp_boundaries if edge <= t)
    parts = [user_vector, a.timestamp_embedding[bucket], [(t - a.timestamp_mean) / np.sqrt(a.timestamp_variance)]]
    if a.history_length:
        assert a.history_vocabulary is not None and a.history_embedding is not None
        vocabulary = a.history_vocabulary.tolist()
        rows = [vocabulary.index(m) if m in vocabulary else a.history_oov for m in history[: a.history_length]]
        if not rows:
            pooled = np.zeros(a.history_embedding.shape[1])
        elif a.history_pooling == "mean":
            pooled = a.history_embedding[rows].mean(axis=0)
        else:
            assert a.history_position_logits is not None
            w = np.exp(a.history_position_logits[: len(rows)].astype(np.float64))
            pooled = (w / w.sum()) @ a.history_embedding[rows]
        parts.append(pooled)
        for position in range(a.history_recent):  # the newest movies one by one; "" (row 0) past the end
            assert a.history_recent_embedding is not None
            parts.append(a.history_recent_embedding[rows[position] if position < len(rows) else 0])
    x = np.concatenate(parts)
    for kernel, bias, relu in zip(a.dense_kernels, a.dense_biases, a.dense_relu, strict=True):
        x = x @ kernel + bias
        x = np.maximum(x, 0) if relu else x
    if a.item_item_embedding is not None:  # past the dense layers, its own softmax over the present positions
        assert a.item_item_position_logits is not None
        if rows:
            w = np.exp(a.item_item_position_logits[: len(rows)].astype(np.float64))
            x = np.concatenate([x, (w / w.sum()) @ a.item_item_embedding[rows]])
        else:
            x = np.concatenate([x, np.zeros(a.item_item_embedding.shape[1])])
    return x / np.linalg.norm(x) if a.normalize else x


QUERIES = [
    ("u1", 900, []),  # before the range: clamped to its start
    ("u2", 1250, ["m1"]),  # exactly on a bucket edge: the upper bucket
    ("nobody", 1749, ["m3", "m1", "nothing-like-it"]),  # unknown user, an unknown movie
    ("", 5_000_000_000, ["m2", "m2", "m1", "m3", "m1"]),  # far future, a history longer than the tower reads
]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"pooling": "positional"},
        {"normalize": True},
        {"history_length": 0},
        {"recent": 2, "pooling": "positional"},
        {"item_item": 3, "pooling": "positional", "normalize": True},
    ],
    ids=str,
)
def test_the_forward_pass_is_the_tower_written_out_by_hand(settings: dict[str, object]) -> None:
    arrays = _arrays(**settings)  # type: ignore[arg-type]
    tower = QueryTower(arrays)
    users, timestamps, histories = (list(column) for column in zip(*QUERIES, strict=True))
    batch = tower(users, timestamps, histories)
    assert batch.dtype == np.float32 and batch.shape == (4, 2 + arrays_width(arrays)) and tower.dim == batch.shape[1]
    for row, (user, timestamp, history) in zip(batch, QUERIES, strict=True):
        np.testing.assert_allclose(row, _by_hand(arrays, user, timestamp, history), rtol=1e-5, atol=1e-5)
    if arrays.normalize:
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-6)


def arrays_width(arrays: QueryTowerArrays) -> int:
    return 0 if arrays.item_item_embedding is None else arrays.item_item_embedding.shape[1]


def test_positional_pooling_with_equal_logits_is_the_mean() -> None:
    positional = _arrays(pooling="positional")
    positional = replace(positional, history_position_logits=np.zeros(3, dtype=np.float32))
    mean = replace(positional, history_pooling="mean", history_position_logits=None)
    queries = (["u1", "u2"], [1100, 1900], [["m1", "m3"], []])
    np.testing.assert_allclose(QueryTower(positional)(*queries), QueryTower(mean)(*queries), rtol=1e-6)


def test_the_file_round_trips_and_a_broken_one_is_a_version_error(tmp_path: Path) -> None:
    arrays = _arrays(pooling="positional", normalize=True, recent=2, item_item=3)
    write_query_weights(tmp_path, arrays)
    tower = read_query_weights(tmp_path)
    assert tower is not None and tower.history_length == 3 and tower.dim == 5
    queries = (["u1", "x"], [1300, 2500], [["m2"], ["m1", "m3"]])
    np.testing.assert_array_equal(tower(*queries), QueryTower(arrays)(*queries))
    assert read_query_weights(tmp_path / "elsewhere") is None  # a version from before the file existed

    members = dict(np.load(tmp_path / "query_weights.npz"))
    members["dense_kernel_1"] = members["dense_kernel_1"][:3]  # no longer chains onto the layer before
    np.savez(tmp_path / "query_weights.npz", **members)
    with pytest.raises(VersionError, match=r"query_weights\.npz cannot be read as a query tower.*dense kernel"):
        read_query_weights(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_embedding": np.zeros((2, 4), np.float32)}, "user_vocabulary and user_embedding disagree"),
        ({"timestamp_boundaries": np.array([1.0], np.float32)}, "timestamp_boundaries and timestamp_embedding"),
        ({"history_pooling": "sum"}, "history_pooling 'sum' is none of"),
        ({"history_pooling": "attention"}, "a history encoder goes with attention pooling"),
        ({"history_pooling": "positional"}, "positional pooling needs history_position_logits"),
        ({"dense_biases": (np.full(6, np.nan, np.float32), np.zeros(2, np.float32))}, "non-finite"),
        ({"history_recent": 4}, "history_recent needs 1..history_length"),
        ({"item_item_embedding": np.zeros((4, 3), np.float32)}, "item_item_embedding needs a row per"),
        (
            {"item_item_embedding": np.zeros((5, 3), np.float32), "item_item_position_logits": np.zeros(2, np.float32)},
            "item_item_embedding needs a row per",
        ),
    ],
)
def test_arrays_that_do_not_form_a_tower_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueryTower(replace(_arrays(), **change))  # type: ignore[arg-type]


def test_probe_queries_reach_every_branch() -> None:
    arrays = _arrays()
    users, timestamps, histories, ratings = probe_queries(arrays, ["m1", "m2", "m3"], now=1_800_000_000, count=64)
    assert len(users) == len(timestamps) == len(histories) == len(ratings) == 64
    assert [len(r) for r in ratings] == [len(h) for h in histories]
    stars = {value for r in ratings for value in r}
    assert {0.0, 1.0, 3.5, 5.0} <= stars and min(stars) < 0 and max(stars) > 5  # every level, and clipping
    assert {"", "no-such-user"} <= set(users) and {"u1", "u2"} <= set(users)
    assert min(timestamps) < arrays.timestamp_low and 1_800_000_000 in timestamps
    assert {1250} <= set(timestamps)  # on a bucket edge
    assert [] in histories and any("no-such-movie" in h for h in histories)
    assert max(len(h) for h in histories) > arrays.history_length


def test_max_difference_is_relative_and_catches_a_shape_change() -> None:
    expected = np.array([[10.0, -20.0]], np.float32)
    assert max_difference(expected, expected + np.float32(0.002)) == pytest.approx(1e-4, rel=1e-3)
    assert max_difference(expected, expected[:, :1]) == float("inf")
