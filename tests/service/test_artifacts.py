"""Reading a version directory: manifest verification, loading, and the search against a brute-force oracle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scann

from contract.contents import verified_manifest
from contract.manifest import IndexInfo, IndexParams, VersionError
from service.artifacts import SearchPlan, load_version
from service.batcher import Neighbours
from service.errors import VersionRejectedError
from service.recommender import best_allowed, exact_top_k, search_depth
from tests.service.conftest import TS, V1
from tests.service.version_factory import Oracle, write_manifest


@pytest.fixture
def version_dir(tmp_path: Path, built: tuple[Path, dict[str, Oracle]]) -> Path:
    return Path(shutil.copytree(built[0] / V1, tmp_path / V1))


def test_a_good_version_verifies(version_dir: Path) -> None:
    manifest = verified_manifest(version_dir)
    assert manifest.version == V1 and "scann/scann_assets.pbtxt" in manifest.files


@pytest.mark.parametrize(
    ("manifest_text", "reason"),
    [
        ("{not json", "does not follow the contract .*Invalid JSON"),
        ('{"format_version": 2, "files": {"a": "b"}}', "format_version: Input should be 1"),
        ('{"format_version": 1}', "files: Field required"),
    ],
)
def test_a_broken_manifest_is_refused(version_dir: Path, manifest_text: str, reason: str) -> None:
    (version_dir / "manifest.json").write_text(manifest_text)
    with pytest.raises(VersionError, match=reason):
        verified_manifest(version_dir)
    with pytest.raises(VersionRejectedError, match=reason):
        load_version(version_dir, max_batch=1, min_recall=0.8)


def test_every_kind_of_mismatch_is_named(version_dir: Path) -> None:
    (version_dir / "training_history.json").write_text("{}")
    (version_dir / "candidate_embeddings.npy").unlink()
    (version_dir / "notes.txt").write_text("hi")
    with pytest.raises(VersionRejectedError) as refused:
        load_version(version_dir, max_batch=1, min_recall=0.8)
    message = str(refused.value)
    assert "missing: candidate_embeddings.npy" in message
    assert "not in manifest: notes.txt" in message
    assert "sha256 differs: training_history.json" in message


def test_loaded_towers_and_index_match_the_oracle(version_dir: Path, oracles: dict[str, Oracle]) -> None:
    oracle = oracles[V1]
    version = load_version(version_dir, max_batch=16, min_recall=0.8)
    # A known user with their history, one past the training range (clamped), a stranger with a history.
    users, times = ["1", "7", "stranger"], [TS, TS + 50_000_000, TS]
    histories = [oracle.history("1", TS), oracle.history("7", TS + 50_000_000), ["3", "9"]]
    queries = version.embed(users, times, histories)
    expected = np.stack([oracle.query(u, t, h) for u, t, h in zip(users, times, histories, strict=True)])
    np.testing.assert_allclose(queries, expected, rtol=1e-5, atol=1e-5)
    assert histories[0] and queries[2].tolist() != version.embed(["stranger"], [TS], [[]])[0].tolist()

    rows, scores = version.search(queries, 10)
    exact = queries @ oracle.candidate_embeddings.T
    np.testing.assert_array_equal(rows, np.argsort(-exact, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(exact, rows, axis=1), rtol=1e-5)

    assert version.ratings_of("stranger")[0].tolist() == []
    rows, times, _ = version.ratings_of("1")
    assert set(rows.tolist()) == oracle.seen_rows("1") and times.tolist() == sorted(times.tolist())
    assert version.history_ids(rows[times < TS]) == oracle.history("1", TS)
    assert version.popularity.tolist() == oracle.popularity.tolist()


def test_a_search_deeper_than_the_catalogue_stops_at_the_catalogue(version_dir: Path) -> None:
    version = load_version(version_dir, max_batch=1, min_recall=0.8)
    rows, _ = version.search(version.embed(["1"], [TS], [[]]), 500)
    assert rows.shape == (1, 40) and sorted(rows[0].tolist()) == list(range(40))


def test_load_refuses_inconsistent_artifacts(version_dir: Path) -> None:
    movies = json.loads((version_dir / "movies.json").read_text())
    (version_dir / "movies.json").write_text(json.dumps(movies[:-1]))
    write_manifest(version_dir)
    with pytest.raises(VersionRejectedError, match=r"candidate_embeddings.npy is \(40, 8\), expected \(39, 8\)"):
        load_version(version_dir, max_batch=1, min_recall=0.8)


def test_search_plan_scales_leaves_and_reorder_with_depth() -> None:
    params = IndexParams(num_leaves=1000, num_leaves_to_search=20, reorder=500)
    plan = SearchPlan.from_index(IndexInfo(kind="tree_ah", params=params, recall_k=100, recall=0.95, num_movies=10**6))
    assert plan.params(10) == {"final_num_neighbors": 10, "leaves_to_search": 20, "pre_reorder_num_neighbors": 500}
    deep = plan.params(50_000)  # a heavy genre filter: look through ~100k points
    assert deep["leaves_to_search"] == 100 and deep["pre_reorder_num_neighbors"] == 50_000
    exact = IndexInfo(kind="brute_force", recall_k=100, recall=1.0, num_movies=40)
    assert SearchPlan.from_index(exact).params(7) == {"final_num_neighbors": 7}


def test_search_depth_covers_exclusions_and_rare_genres() -> None:
    assert search_depth(10, 1682, 1682, 0) == 10
    assert search_depth(10, 1682, 1682, 300) == 310  # every seen movie might rank above the rest
    assert search_depth(10, 1682, 168, 0) == 101  # a genre with a tenth of the movies: ten times deeper
    assert search_depth(10, 1682, 2, 50) == 1682  # never past the catalogue


def test_a_short_filtered_search_falls_back_to_exact(version_dir: Path, oracles: dict[str, Oracle]) -> None:
    """When the index returns too few allowed hits, exact search over the allowed movies fills the answer."""
    oracle = oracles[V1]
    version = load_version(version_dir, max_batch=1, min_recall=0.8)
    query = version.embed(["3"], [TS], [oracle.history("3", TS)])[0]
    rows, scores = version.search(query[None], 5)
    allowed = np.zeros(40, dtype=bool)
    allowed[20:] = True
    hits = Neighbours(query, rows[0], np.where(np.arange(5) < 4, scores[0], np.nan))  # ScaNN's NaN padding
    short_rows, _ = best_allowed(hits, allowed, 5)
    assert len(short_rows) < 5 and all(row >= 20 for row in short_rows)

    exact_rows, exact_scores = exact_top_k(version, query, allowed, 5)
    truth = oracle.top_k("3", TS, 5, exclude_rows=set(range(20)))
    assert [oracle.movies[row]["movie_id"] for row in exact_rows] == [movie_id for movie_id, _ in truth]
    np.testing.assert_allclose(exact_scores, [score for _, score in truth], rtol=1e-4)


def test_an_index_built_over_other_embeddings_is_refused(version_dir: Path) -> None:
    """Checksums made to match, but scann/ searches shuffled rows: the warm-up queries catch it."""
    embeddings = np.load(version_dir / "candidate_embeddings.npy")
    shutil.rmtree(version_dir / "scann")
    shuffled = embeddings[np.random.default_rng(0).permutation(len(embeddings))]
    searcher = scann.scann_ops_pybind.builder(shuffled, 10, "dot_product").score_brute_force().build()
    (version_dir / "scann").mkdir()
    searcher.serialize(str(version_dir / "scann"), relative_path=True)
    write_manifest(version_dir)
    with pytest.raises(VersionRejectedError, match=r"the index finds 0\.\d+ of the exact top-10"):
        load_version(version_dir, max_batch=8, min_recall=0.8)
    assert load_version(version_dir, max_batch=8, min_recall=0.0).name == V1  # the check, not the files


def test_non_finite_candidate_embeddings_are_refused(version_dir: Path) -> None:
    embeddings = np.load(version_dir / "candidate_embeddings.npy")
    embeddings[3] = np.nan
    np.save(version_dir / "candidate_embeddings.npy", embeddings)
    write_manifest(version_dir)
    with pytest.raises(VersionRejectedError, match=r"candidate_embeddings\.npy holds non-finite values"):
        load_version(version_dir, max_batch=8, min_recall=0.8)


def test_content_embeddings_are_optional_and_checked_when_present(version_dir: Path) -> None:
    assert load_version(version_dir, max_batch=8, min_recall=0.8).content_embeddings is None  # an older version
    np.save(version_dir / "content_embeddings.npy", np.ones((40, 5), dtype=np.float32))  # 8 columns, no item-item
    write_manifest(version_dir)
    with pytest.raises(VersionRejectedError, match=r"content_embeddings\.npy is \(40, 5\), expected \(40, 8\)"):
        load_version(version_dir, max_batch=8, min_recall=0.8)
    np.save(version_dir / "content_embeddings.npy", np.ones((40, 8), dtype=np.float32))
    write_manifest(version_dir)
    assert load_version(version_dir, max_batch=8, min_recall=0.8).content_embeddings.shape == (40, 8)  # type: ignore[union-attr]


def test_a_version_without_a_required_entry_is_refused(version_dir: Path) -> None:
    shutil.rmtree(version_dir / "candidate_model")
    write_manifest(version_dir)  # the checksums match what is there, but the contract needs the tower
    with pytest.raises(VersionRejectedError, match="lacks candidate_model"):
        load_version(version_dir, max_batch=1, min_recall=0.8)
