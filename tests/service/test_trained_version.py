"""The service over a version the training package really exported (the shared tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tests.service.conftest import TS, serving


def test_served_answers_match_brute_force_over_the_exported_towers(
    tiny_models_dir: Path, tiny_version_dir: Path
) -> None:
    """Oracle: the exported query SavedModel, NumPy dot products, and seen.npz, read independently."""
    query_fn = tf.saved_model.load(str(tiny_version_dir / "query_model")).signatures["serving_default"]
    embeddings = np.load(tiny_version_dir / "candidate_embeddings.npy")
    movies = json.loads((tiny_version_dir / "movies.json").read_text())
    seen = np.load(tiny_version_dir / "seen.npz")
    users = seen["user_ids"].tolist()[:5]
    with serving(tiny_models_dir) as client:
        for user in users:
            body = client.get("/recommend", params={"user_id": user, "timestamp": TS, "k": 5}).json()
            query = query_fn(user_id=tf.constant([user]), timestamp=tf.constant([TS], tf.int64))["embedding"]
            scores = embeddings @ query.numpy()[0]
            index = users.index(user)
            scores[seen["movie_rows"][seen["indptr"][index] : seen["indptr"][index + 1]]] = -np.inf
            best = np.argsort(-scores, kind="stable")[:5]
            assert [item["movie_id"] for item in body["items"]] == [movies[row]["movie_id"] for row in best]
            np.testing.assert_allclose([item["score"] for item in body["items"]], scores[best], rtol=1e-4)
        info = client.get("/model").json()
    assert info["version"] == tiny_version_dir.name and info["index"]["recall"] == 1.0


def test_exported_candidate_embeddings_are_the_candidate_tower(tiny_version_dir: Path) -> None:
    candidate_fn = tf.saved_model.load(str(tiny_version_dir / "candidate_model")).signatures["serving_default"]
    movies = json.loads((tiny_version_dir / "movies.json").read_text())
    out = candidate_fn(
        movie_id=tf.constant([m["movie_id"] for m in movies]), title=tf.constant([m["title"] for m in movies])
    )["embedding"].numpy()
    np.testing.assert_allclose(out, np.load(tiny_version_dir / "candidate_embeddings.npy"), rtol=1e-5, atol=1e-6)
