"""The exported version: contents, round trip, exact index, atomicity, pointer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scann
import tensorflow as tf

from contract.checksums import file_checksums
from contract.contents import read_rating_model
from contract.manifest import IndexParams, read_manifest
from contract.pointers import new_version_name, promote
from tests.towers import candidate_tower_embeddings
from training import export as export_module
from training.config import TrainConfig
from training.evaluate import accuracy_table, model_ranks, served_vectors
from training.export import export_trained
from training.fit import fit, query_inputs
from training.folds import prepare
from training.index import build_searcher, searcher_recall
from training.train import train_versions

KS = {"top_1", "top_5", "top_10", "top_50", "top_100"}


def _manifest(version_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((version_dir / "manifest.json").read_text())


def test_manifest_lists_every_file_and_the_agreed_metrics(tiny_version_dir: Path) -> None:
    manifest = _manifest(tiny_version_dir)
    assert manifest["version"] == tiny_version_dir.name
    assert manifest["files"] == file_checksums(tiny_version_dir)
    for name in ("query_model/saved_model.pb", "candidate_model/saved_model.pb", "candidate_embeddings.npy",
                 "movies.json", "seen.npz", "popularity.npy", "scann/scann_assets.pbtxt"):  # fmt: skip
        assert name in manifest["files"]
    metrics = manifest["metrics"]
    for who in ("model", "most_popular"):
        for protocol in ("A", "B"):
            assert set(metrics[who][protocol]) == KS
    assert metrics["split"] == "random" and metrics["test_size"] == 240
    assert manifest["config"]["layers"] == [16, 8]
    # The item-to-item channel's columns follow the dense stack's: what /similar reads a new movie without.
    # With the EASE prior, its fixed columns are the last of the channel.
    config = manifest["config"]
    assert manifest["item_item_dim"] == config["item_item_dim"] + config["item_item_prior"] > 0
    assert manifest["item_item_prior"] == config["item_item_prior"]  # what an added movie borrows
    assert manifest["embedding_dim"] == 8 + manifest["item_item_dim"]
    assert manifest["library_versions"]["scann"] == "1.4.2"
    assert manifest["index"]["kind"] == "brute_force" and manifest["index"]["recall"] == 1.0
    index = manifest["index"]
    scann_bytes = sum(size for name, size in _file_sizes(tiny_version_dir).items() if name.startswith("scann/"))
    assert index["size_bytes"] == scann_bytes > 0
    assert index["build_seconds"] >= 0 and 0 < index["query_ms_p50"] <= index["query_ms_p99"] < 1000
    assert (tiny_version_dir.parent / "CURRENT").read_text().strip() == tiny_version_dir.name


def _file_sizes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*") if p.is_file()}


def test_reloaded_towers_reproduce_the_metrics(tiny_data_dir: Path, tmp_path: Path) -> None:
    """Round trip: without the serving refit the exported SavedModels are the scored model, so they alone give
    the same embeddings and therefore the same protocol A and B figures, histories included."""
    config = TrainConfig(layers=(8,), embedding_dim=4, epochs=2, batch_size=256, refit=False, evaluate_temporal=False)
    version_dir = train_versions([config], tiny_data_dir, tmp_path / "models", progress=False)[0].version_dir
    manifest = _manifest(version_dir)
    fold = prepare(config, tiny_data_dir).random
    assert fold.test is not None and fold.held_out is not None
    query_model = tf.saved_model.load(str(version_dir / "query_model")).signatures["serving_default"]
    movies = json.loads((version_dir / "movies.json").read_text())
    candidates = candidate_tower_embeddings(version_dir, movies)
    np.testing.assert_allclose(candidates, np.load(version_dir / "candidate_embeddings.npy"), atol=1e-6)
    # content_embeddings.npy: the same tower with every id blanked, the columns before the item-to-item channel.
    blanked = candidate_tower_embeddings(version_dir, [{**m, "movie_id": ""} for m in movies])
    content_width = manifest["embedding_dim"] - manifest["item_item_dim"]
    np.testing.assert_allclose(np.load(version_dir / "content_embeddings.npy"), blanked[:, :content_width], atol=1e-6)
    assert not np.allclose(blanked, candidates, atol=1e-3)  # the id does matter to the tower
    inputs = query_inputs(fold.test, fold.test_histories, np.array([m["movie_id"] for m in movies]))
    queries = query_model(**{name: tf.constant(value) for name, value in inputs.items()})["embedding"].numpy()
    # The rating term the version holds, folded in from each query's known ratings as training scored it, and
    # its re-ordering of each answer's best movies.
    rating_model = read_rating_model(version_dir, read_manifest(version_dir), len(movies))
    assert rating_model is not None and manifest["rating_width"] == rating_model.width
    queries, candidates = served_vectors(rating_model, queries, candidates, fold.held_out)
    for protocol, exclude in (("A", False), ("B", True)):
        ranks = model_ranks(queries, candidates, fold.popularity, fold.held_out, exclude, rating=rating_model)
        table = accuracy_table(ranks)
        assert table == manifest["metrics"]["model"][protocol]


def test_exported_index_matches_numpy_brute_force(tiny_version_dir: Path) -> None:
    searcher = scann.scann_ops_pybind.load_searcher(str(tiny_version_dir / "scann"))
    term = np.load(tiny_version_dir / "rating_model.npz")  # the index searches the rating term's columns too
    embeddings = np.hstack(
        [np.load(tiny_version_dir / "candidate_embeddings.npy"), term["item_bias"][:, None], term["item_factors"]]
    )
    queries = np.random.default_rng(0).normal(size=(20, embeddings.shape[1])).astype(np.float32)
    found, _ = searcher.search_batched(queries, final_num_neighbors=10)
    exact = np.argsort(-(queries @ embeddings.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(found, exact)


def test_tree_index_with_one_leaf_searched_and_full_reorder_is_exact() -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(30, 16)).astype(np.float32)
    params = IndexParams(num_leaves=2, num_leaves_to_search=2, training_sample_size=500,
                         dimensions_per_block=2, anisotropic_quantization_threshold=0.2, reorder=500)  # fmt: skip
    assert searcher_recall(build_searcher(embeddings, "tree_ah", params), embeddings, queries, 100) == 1.0


def test_an_interrupted_export_leaves_nothing(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(layers=(8,), embedding_dim=4, epochs=1, batch_size=256, refit=False)
    prepared = prepare(config, tiny_data_dir)
    run = fit(config, prepared.random, progress=False)
    models = tmp_path / "models"
    metrics = train_versions([config], tiny_data_dir, tmp_path / "scratch", progress=False)[0].metrics
    first = export_trained(run, prepared, models, b"png", metrics)
    promote(models, first.name)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed while building the index")

    monkeypatch.setattr(export_module, "build_index", crash)
    with pytest.raises(KeyboardInterrupt):
        export_trained(run, prepared, models, b"png", metrics)
    assert sorted(p.name for p in models.iterdir()) == sorted([first.name, "CURRENT"])
    assert (models / "CURRENT").read_text().strip() == first.name


def test_version_names_sort_in_time_order(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    same_second = []
    for _ in range(12):  # past ten, where an unpadded ".10" would sort before ".2"
        same_second.append(new_version_name(tmp_path, moment))
        (tmp_path / same_second[-1]).mkdir()
    later = new_version_name(tmp_path, datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert same_second[0] == "20260102T030405Z"
    assert sorted([later, *reversed(same_second)]) == [*same_second, later]


def test_promote_refuses_an_incomplete_version(tmp_path: Path) -> None:
    (tmp_path / "20260101T000000Z").mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete version"):
        promote(tmp_path, "20260101T000000Z")
    assert not (tmp_path / "CURRENT").exists()
