"""The service over a version the training package really exported (the shared tiny model)."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from contract.checksums import file_checksums
from contract.manifest import read_manifest, write_manifest
from contract.query_tower import max_difference, probe_queries
from service.artifacts import load_version
from service.errors import VersionRejectedError
from tests.rating_term import answer, load_term, rating_term, scale, user_part
from tests.service.conftest import TS, serving
from tests.towers import candidate_tower_embeddings


def test_served_answers_match_brute_force_over_the_exported_towers(
    tiny_models_dir: Path, tiny_version_dir: Path
) -> None:
    """Oracle: the exported query SavedModel, NumPy dot products, and seen.npz, read independently."""
    query_fn = tf.saved_model.load(str(tiny_version_dir / "query_model")).signatures["serving_default"]
    embeddings = np.load(tiny_version_dir / "candidate_embeddings.npy")
    movies = json.loads((tiny_version_dir / "movies.json").read_text())
    seen = np.load(tiny_version_dir / "seen.npz")
    query_info = json.loads((tiny_version_dir / "manifest.json").read_text())["query"]
    length, min_rating = query_info["history_length"], query_info["history_min_rating"]
    term = load_term(tiny_version_dir)  # every rating known before TS counts there, dislikes too
    users = seen["user_ids"].tolist()[:5]
    reordered = 0
    with serving(tiny_models_dir) as client:
        for user in users:
            body = client.get("/recommend", params={"user_id": user, "timestamp": TS, "k": 5}).json()
            index = users.index(user)
            span = slice(seen["indptr"][index], seen["indptr"][index + 1])
            rated, times, stars = seen["movie_rows"][span], seen["timestamps"][span], seen["ratings"][span]
            read = (times < TS) & (stars >= min_rating)  # a dislike is not read as history
            history = [movies[row]["movie_id"] for row in rated[read][::-1][:length]]
            assert body["history_used"] == len(history) > 0
            query = query_fn(
                user_id=tf.constant([user]),
                timestamp=tf.constant([TS], tf.int64),
                history=tf.constant([history + [""] * (length - len(history))]),
            )["embedding"]
            tower = query.numpy()[0]
            added = rating_term(term, tower, rated[times < TS], stars[times < TS])
            scores = embeddings @ tower + added
            scores[rated] = -np.inf
            s_u = scale(term, tower, user_part(term, rated[times < TS], stars[times < TS]))
            best, best_scores = answer(term, scores, added, s_u, 5)
            reordered += best.tolist() != np.argsort(-scores, kind="stable")[:5].tolist()
            assert [item["movie_id"] for item in body["items"]] == [movies[row]["movie_id"] for row in best]
            # A score near zero is compared absolutely: float32 sums in another order differ in the last bits.
            np.testing.assert_allclose([item["score"] for item in body["items"]], best_scores, rtol=1e-4, atol=1e-5)
        info = client.get("/model").json()
    assert info["version"] == tiny_version_dir.name and info["index"]["recall"] == 1.0
    assert reordered > 0  # the demotion moved some answers (tests/conftest.py's TINY_TRAINING asks for one)


def test_exported_candidate_embeddings_are_the_candidate_tower(tiny_version_dir: Path) -> None:
    movies = json.loads((tiny_version_dir / "movies.json").read_text())
    out = candidate_tower_embeddings(tiny_version_dir, movies)
    np.testing.assert_allclose(out, np.load(tiny_version_dir / "candidate_embeddings.npy"), rtol=1e-5, atol=1e-6)


def _top_10(client: TestClient, user: str, timestamp: int | None) -> list[str]:
    params = {"user_id": user, "k": 10} | ({} if timestamp is None else {"timestamp": timestamp})
    body = client.get("/recommend", params=params).json()
    assert body["personalised"], body
    return [item["movie_id"] for item in body["items"]]


def _mean_overlap(lists: list[list[str]]) -> float:
    pairs = list(itertools.combinations(lists, 2))
    return sum(len(set(a) & set(b)) / 10 for a, b in pairs) / len(pairs)


def test_queries_at_now_are_personalised_and_time_is_clamped(tiny_models_dir: Path, tiny_version_dir: Path) -> None:
    """At now, years past the data, each user still gets their own list: the model clamps time to its range."""
    manifest = json.loads((tiny_version_dir / "manifest.json").read_text())
    start, end = manifest["query"]["timestamp_min"], manifest["query"]["timestamp_max"]
    year_2100 = 4_102_444_800
    users = [str(u) for u in np.load(tiny_version_dir / "seen.npz")["user_ids"].tolist()[:21]]
    with serving(tiny_models_dir) as client:
        body = client.get("/recommend", params={"user_id": users[0]}).json()
        assert abs(body["timestamp"] - time.time()) < 60 and body["effective_timestamp"] == end
        # After the last rating, every moment is the same to the model: now, the data's end + 1 s, 2100.
        assert (
            _top_10(client, users[0], None)
            == _top_10(client, users[0], end + 1)
            == _top_10(client, users[0], year_2100)
        )
        # Unclamped, "now" would put the time features far outside training and swamp the user: one list for all.
        at_now = _mean_overlap([_top_10(client, user, None) for user in users])
        inside = _mean_overlap([_top_10(client, user, end - 86_400) for user in users])
    assert start < end - 86_400 and at_now <= inside + 0.05, (at_now, inside)


def _rechecksum(version_dir: Path) -> None:
    """Make the manifest's checksums match the files again, as a careless or malicious writer would."""
    manifest = read_manifest(version_dir)
    write_manifest(version_dir, manifest.model_copy(update={"files": file_checksums(version_dir)}))


def _saved_model_embeddings(
    version_dir: Path,
    users: list[str],
    timestamps: list[int],
    histories: list[list[str]],
    ratings: list[list[float]] | None = None,
) -> np.ndarray:
    fn = tf.saved_model.load(str(version_dir / "query_model")).signatures["serving_default"]
    query = read_manifest(version_dir).query
    length = query.history_length
    padded = [h[:length] + [""] * (length - len(h[:length])) for h in histories]
    inputs = {
        "user_id": tf.constant(users),
        "timestamp": tf.constant(timestamps, tf.int64),
        "history": tf.constant(padded),
    }
    if query.history_ratings:
        stars = [[*r[:length], *[0.0] * (length - len(r[:length]))] for r in (ratings or [[] for _ in users])]
        inputs["history_rating"] = tf.constant(stars, tf.float32)
    return fn(**inputs)["embedding"].numpy()


def test_the_served_query_tower_is_numpy_and_equals_the_saved_model(tiny_version_dir: Path) -> None:
    """Probe queries through every branch, at now too: the arrays the server computes with are the SavedModel."""
    version = load_version(tiny_version_dir, max_batch=8, min_recall=0.8)
    assert version.query_tower is not None and version.query_fn is None  # the SavedModel was checked, then dropped
    known = [m["movie_id"] for m in version.movies]
    arrays = version.query_tower.arrays
    users, timestamps, histories, ratings = probe_queries(arrays, known, int(time.time()), count=200, seed=7)
    expected = _saved_model_embeddings(tiny_version_dir, users, timestamps, histories, ratings)
    assert max_difference(expected, version.embed(users, timestamps, histories, ratings)) < 1e-5


def test_the_rating_parts_folded_in_at_load_are_the_ones_a_request_would_fold_in(tiny_version_dir: Path) -> None:
    """A known user asking at now with nothing stored reads their part from the load; asking inside the data,
    only the ratings before that moment count, so it is folded in again, and differs."""
    version = load_version(tiny_version_dir, max_batch=8, min_recall=0.8)
    now = int(time.time())
    for user, row in list(version.user_rows.items())[:10]:
        rows, times, values = version.ratings_of(user)
        read = version.rating_part(rows, times, values, now, row)
        assert read is not None and np.shares_memory(read, version.rating_parts)  # read, not solved again
        np.testing.assert_array_equal(read, version.rating_part(rows, times, values, now))
        middle = int(times[len(times) // 2])
        earlier = version.rating_part(rows, times, values, middle, row)
        assert earlier is not None and not np.array_equal(earlier, read)


def test_query_weights_that_disagree_with_the_saved_model_are_refused(tiny_version_dir: Path, tmp_path: Path) -> None:
    version_dir = Path(shutil.copytree(tiny_version_dir, tmp_path / tiny_version_dir.name))
    members = dict(np.load(version_dir / "query_weights.npz"))
    members["timestamp_embedding"] = members["timestamp_embedding"][::-1].copy()  # buckets in the wrong order
    np.savez(version_dir / "query_weights.npz", **members)
    _rechecksum(version_dir)
    with pytest.raises(VersionRejectedError, match=r"query_weights\.npz disagrees with query_model by"):
        load_version(version_dir, max_batch=8, min_recall=0.8)


def test_a_version_without_query_weights_serves_from_its_saved_model(tiny_version_dir: Path, tmp_path: Path) -> None:
    version_dir = Path(shutil.copytree(tiny_version_dir, tmp_path / tiny_version_dir.name))
    (version_dir / "query_weights.npz").unlink()
    _rechecksum(version_dir)
    version = load_version(version_dir, max_batch=8, min_recall=0.8)
    assert version.query_tower is None and version.query_fn is not None
    users, timestamps, histories = ["1", "no-such-user"], [TS, int(time.time())], [[], [version.movies[0]["movie_id"]]]
    expected = _saved_model_embeddings(tiny_version_dir, users, timestamps, histories)
    np.testing.assert_allclose(version.embed(users, timestamps, histories), expected, rtol=1e-6)
