"""Similar movies on a planted version: a movie's siblings, not the popular movies; the genre filter; errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scann
from fastapi.testclient import TestClient

from contract.user_ratings import UserRatings
from service import similar
from service.artifacts import ModelVersion, load_version
from service.config import Settings
from service.errors import InvalidRequestError, NotInCatalogueError, UnknownMovieError
from service.schemas import SimilarResponse
from tests.service.conftest import assert_error, serving
from tests.service.version_factory import build_version, write_current, write_manifest

NAME = "20260201T000000Z"
NUM_MOVIES, DIM = 40, 8
POPULAR = list(range(5))  # long embeddings along a popularity axis, rated by everyone: the old /similar's answer
FAMILIES = [list(range(5 + 5 * f, 10 + 5 * f)) for f in range(5)]  # five families of five siblings, rows 5..29
PAIR = (30, 31)  # unrelated embeddings, rated together by the same three users: item-kNN alone links them
UNRATED = 39  # nobody rated it: its embedding alone ranks its neighbours
GENRES = {row: ["Comedy"] if row % 2 else ["Drama"] for row in range(NUM_MOVIES)}
GENRES |= {7: ["Drama", "Documentary"], 20: ["Comedy", "Documentary"], 33: ["Western"]}


def planted_embeddings() -> np.ndarray:
    """float32 [40, 8]: dims 0-4 are the families', 5 and 6 the pair's, 7 a popularity axis."""
    rng = np.random.default_rng(3)
    embeddings = rng.normal(scale=0.05, size=(NUM_MOVIES, DIM)).astype(np.float32)
    for f, family in enumerate(FAMILIES):
        embeddings[family, f] += 1.0
        embeddings[family, 7] += 0.3
    embeddings[POPULAR, :5] += 1.0
    embeddings[POPULAR, 7] += 10.0
    embeddings[PAIR[0], 5] += 1.0
    embeddings[PAIR[1], 6] += 1.0
    embeddings[32:, 7] += 1.0
    embeddings[32:] += rng.normal(scale=0.2, size=(NUM_MOVIES - 32, DIM)).astype(np.float32)
    return embeddings


def planted_ratings() -> dict[str, list[int]]:
    """user_id -> movie rows, oldest first: four fans per family (one re-rates a movie), the pair's three fans,
    and casual users of the popular movies who each rated one unrelated movie."""
    seen = {f"f{f}u{u}": [*family, *POPULAR] for f, family in enumerate(FAMILIES) for u in range(4)}
    seen["f0u0"].append(FAMILIES[0][0])  # a re-rating: item-kNN counts who rated what, once
    seen |= {f"p{u}": list(PAIR) for u in range(3)}
    seen |= {f"c{u}": [*POPULAR, row] for u, row in enumerate(range(32, UNRATED))}
    return seen


def write_seen(path: Path, seen: dict[str, list[int]]) -> None:
    user_ids = sorted(seen)
    rows = [seen[u] for u in user_ids]
    np.savez(
        path,
        user_ids=np.array(user_ids),
        indptr=np.cumsum([0] + [len(r) for r in rows]).astype(np.int64),
        movie_rows=np.array([m for r in rows for m in r], dtype=np.int32),
        timestamps=np.array([880_000_000 + i for r in rows for i in range(len(r))], dtype=np.int64),
    )


def oracle_scores(embeddings: np.ndarray, seen: dict[str, list[int]]) -> np.ndarray:
    """[movies, movies] in float64, from first principles: the blend of embedding cosine and item-kNN, plus the
    genres' Jaccard overlap."""
    rated = np.zeros((len(seen), NUM_MOVIES))
    for user, rows in enumerate(seen.values()):
        rated[user, rows] = 1.0
    raters = rated.sum(axis=0)
    knn = rated.T @ rated / np.sqrt(np.outer(raters, raters) + 1.0)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosines = unit @ unit.T
    rated_rows = np.flatnonzero(raters > 0)
    for row in np.flatnonzero(raters == 0):  # nobody rated it: it borrows its nearest rated movies' kNN rows
        lenders = rated_rows[np.argsort(-cosines[row, rated_rows], kind="stable")[: similar.LENDERS]]
        weights = np.maximum(cosines[row, lenders], 0.0)
        knn[row] = weights @ knn[lenders] / weights.sum()
    w = similar.EMBEDDING_WEIGHT
    overlap = np.array(
        [[len({*GENRES[a]} & {*GENRES[b]}) / len({*GENRES[a], *GENRES[b]}) for b in range(NUM_MOVIES)] for a in GENRES]
    )
    scores = w * cosines + (1 - w) * knn + similar.GENRE_WEIGHT * overlap
    np.fill_diagonal(scores, -np.inf)
    return scores


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A models dir serving a factory version with planted embeddings (and index), ratings and genres; and
    the oracle's scores."""
    models = tmp_path_factory.mktemp("similar") / "models"
    build_version(models, NAME, num_movies=NUM_MOVIES, dim=DIM, make_current=False)
    version_dir = models / NAME
    embeddings = planted_embeddings()
    np.save(version_dir / "candidate_embeddings.npy", embeddings)
    searcher = scann.scann_ops_pybind.builder(embeddings, 10, "dot_product").score_brute_force().build()
    for path in (version_dir / "scann").iterdir():
        path.unlink()
    searcher.serialize(str(version_dir / "scann"), relative_path=True)
    write_seen(version_dir / "seen.npz", planted_ratings())
    movies = json.loads((version_dir / "movies.json").read_text())
    for row, movie in enumerate(movies):
        movie["genres"] = GENRES[row]
    (version_dir / "movies.json").write_text(json.dumps(movies))
    write_manifest(version_dir)
    write_current(models, NAME)
    return models, oracle_scores(embeddings, planted_ratings())


@pytest.fixture(scope="module")
def client(planted: tuple[Path, np.ndarray]) -> Iterator[TestClient]:
    with serving(planted[0], max_k=50) as client:
        yield client


@pytest.fixture(scope="module")
def version(planted: tuple[Path, np.ndarray]) -> ModelVersion:
    return load_version(planted[0] / NAME, max_batch=4, min_recall=0.8)


def ids(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [item["movie_id"] for item in body["items"]]


def rows_of(body: dict) -> list[int]:  # type: ignore[type-arg]
    return [int(movie_id) - 1 for movie_id in ids(body)]


def test_every_answer_is_the_oracles_blend(client: TestClient, planted: tuple[Path, np.ndarray]) -> None:
    scores = planted[1]
    for row in range(NUM_MOVIES):
        response = client.get(f"/movies/{row + 1}/similar", params={"k": 5})
        assert response.status_code == 200, response.text
        body = SimilarResponse.model_validate(response.json()).model_dump()
        assert (body["movie_id"], body["model_version"]) == (str(row + 1), NAME)
        expected = np.argsort(-scores[row], kind="stable")[:5]
        assert rows_of(body) == expected.tolist(), row
        assert [item["score"] for item in body["items"]] == pytest.approx(scores[row, expected].tolist(), abs=1e-5)
        assert [item["rank"] for item in body["items"]] == [1, 2, 3, 4, 5]


def test_a_movie_lists_its_siblings_and_no_popular_movie(client: TestClient, planted: tuple[Path, np.ndarray]) -> None:
    embeddings = planted_embeddings()
    for family in FAMILIES:
        for row in family:
            listed = rows_of(client.get(f"/movies/{row + 1}/similar", params={"k": 4}).json())
            assert sorted(listed) == [r for r in family if r != row]
        # What the dot product (the old /similar) answered: the popular movies.
        dot = embeddings @ embeddings[family[0]]
        dot[family[0]] = -np.inf
        assert set(np.argsort(-dot)[:4].tolist()) <= set(POPULAR)


def test_co_ratings_link_movies_the_embeddings_do_not(client: TestClient) -> None:
    assert rows_of(client.get(f"/movies/{PAIR[0] + 1}/similar", params={"k": 1}).json()) == [PAIR[1]]
    assert rows_of(client.get(f"/movies/{PAIR[1] + 1}/similar", params={"k": 1}).json()) == [PAIR[0]]


def test_a_movie_nobody_rated_borrows_the_co_ratings_of_the_rated_movies_it_reads_like(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Movie 3 is new and reads like movie 0, which the same users rated with movie 1; movie 2 reads a little
    like movie 3 too, but nobody rated it with movie 0. By content alone 2 would come before 1; borrowing
    movie 0's co-ratings puts 1 first, as movie 0's own fans would."""
    monkeypatch.setattr(similar, "LENDERS", 1)
    embeddings = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6], [1.0, 0.0, 0.1]], dtype=np.float32)
    ratings = UserRatings(
        user_ids=np.array(["1", "2", "3"]),
        indptr=np.array([0, 2, 4, 5], dtype=np.int64),
        movie_rows=np.array([0, 1, 0, 1, 2], dtype=np.int32),
        timestamps=np.zeros(5, dtype=np.int64),
    )
    index = similar.SimilarIndex.build(embeddings, ratings)
    cosines = index.cosines(3)
    assert cosines[2] > cosines[1]  # by content alone, 2 first
    knn_of_0 = index.knn(0)
    np.testing.assert_allclose(index.scores(3), 0.5 * cosines + 0.5 * knn_of_0, rtol=1e-6)
    scores = index.scores(3)
    assert scores[0] > scores[1] > scores[2]
    monkeypatch.setattr(similar, "LENDERS", 10)  # more lenders than rated movies: all three lend, by cosine
    weights = np.maximum(cosines[:3], 0)
    expected = weights @ np.stack([index.knn(r) for r in range(3)]) / weights.sum()
    np.testing.assert_allclose(index.borrowed_knn(cosines), expected, rtol=1e-6)


def test_content_is_compared_centred_so_a_part_every_movie_shares_does_not_decide() -> None:
    """Shifting every movie's content by the same vector (here a large one, as the part every title shares in
    a trained tower) changes neither which movies a new one meets nor their cosines; uncentred, the shift
    makes every movie read alike."""
    rng = np.random.default_rng(0)
    content = rng.normal(size=(6, 4)).astype(np.float32)
    shift = np.array([20.0, -5.0, 3.0, 9.0], dtype=np.float32)
    ratings = UserRatings(
        user_ids=np.array(["1"]),
        indptr=np.array([0, 5], dtype=np.int64),
        movie_rows=np.arange(5, dtype=np.int32),  # movie 5 is new
        timestamps=np.zeros(5, dtype=np.int64),
    )
    embeddings = rng.normal(size=(6, 6)).astype(np.float32)
    plain = similar.SimilarIndex.build(embeddings, ratings, item_item_dim=2, content=content)
    shifted = similar.SimilarIndex.build(embeddings, ratings, item_item_dim=2, content=content + shift)
    np.testing.assert_allclose(plain.cosines(5), shifted.cosines(5), atol=1e-5)
    centred = similar.unit_rows(content - content.mean(axis=0))
    np.testing.assert_allclose(plain.cosines(5), centred @ centred[5], atol=1e-6)
    uncentred = similar.unit_rows(content + shift)
    assert (uncentred @ uncentred[5]).min() > 0.9  # what the shift did to the plain cosine


def test_the_default_k_is_10_and_the_movie_itself_is_left_out(client: TestClient) -> None:
    body = client.get("/movies/6/similar").json()
    assert len(body["items"]) == 10 and "6" not in ids(body)
    everything = client.get("/movies/6/similar", params={"k": 50}).json()
    assert len(everything["items"]) == NUM_MOVIES - 1 and "6" not in ids(everything)


def test_similar_errors(client: TestClient) -> None:
    assert_error(client.get("/movies/9999/similar"), 404, "unknown_movie", "'9999'", f"{NUM_MOVIES} movies")
    assert_error(client.get("/movies/6/similar", params={"k": 0}), 422, "invalid_request", "query.k")
    assert_error(client.get("/movies/6/similar", params={"k": 51}), 422, "invalid_request", "k=51", "RECSYS_MAX_K")


def test_the_genre_filter_keeps_movies_of_any_of_the_genres(
    version: ModelVersion, planted: tuple[Path, np.ndarray]
) -> None:
    settings = Settings(max_k=50)
    row = FAMILIES[0][0]  # row 5, a Comedy; its siblings are rows 6, 7 and 8 (Drama) and 9 (Comedy)
    body = similar.similar(version, str(row + 1), 3, settings, ["Drama"])
    drama = [r for r in np.argsort(-planted[1][row], kind="stable").tolist() if "Drama" in GENRES[r]][:3]
    assert rows_of(body) == drama and sorted(drama) == [6, 7, 8]
    assert all("Drama" in item["genres"] for item in body["items"])
    either = similar.similar(version, str(row + 1), 50, settings, ["Western", "Documentary"])
    assert sorted(rows_of(either)) == [7, 20, 33]
    unfiltered = similar.similar(version, str(row + 1), 50, settings)
    assert similar.similar(version, str(row + 1), 50, settings, [])["items"] == unfiltered["items"]


def test_the_genre_filter_may_leave_fewer_than_k_or_none(version: ModelVersion) -> None:
    settings = Settings(max_k=50)
    assert rows_of(similar.similar(version, "8", 10, settings, ["Documentary"])) == [20]  # row 7's only peer
    assert similar.similar(version, "34", 10, settings, ["Western"])["items"] == []  # only the movie itself


def test_the_genre_filter_and_k_raise_the_recommend_errors(version: ModelVersion) -> None:
    settings = Settings(max_k=50)
    with pytest.raises(NotInCatalogueError, match=r"unknown genre\(s\) \['Nope'\].*known genres"):
        similar.similar(version, "6", 3, settings, ["Drama", "Nope"])
    with pytest.raises(InvalidRequestError, match="k=51 is above the maximum of 50"):
        similar.similar(version, "6", 51, settings)
    with pytest.raises(UnknownMovieError, match="'nope' is not in the catalogue"):
        similar.similar(version, "nope", 3, settings)


def test_the_index_is_built_once_per_version(version: ModelVersion) -> None:
    assert similar.prepare(version) is similar.prepare(version)


def test_co_ratings_of_a_movie_with_more_raters_than_the_cap_are_a_scaled_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 12 users rated movies 0 and 1; every third also rated movie 2.
    rows = [[0, 1, 2] if user % 3 == 0 else [0, 1] for user in range(12)]
    ratings = UserRatings(
        user_ids=np.array([str(u) for u in range(12)]),
        indptr=np.cumsum([0] + [len(r) for r in rows]).astype(np.int64),
        movie_rows=np.array([m for r in rows for m in r], dtype=np.int32),
        timestamps=np.zeros(sum(len(r) for r in rows), dtype=np.int64),
    )
    index = similar.SimilarIndex.build(np.eye(3, dtype=np.float32), ratings)
    np.testing.assert_array_equal(index.co_ratings(0), [12, 12, 4])
    monkeypatch.setattr(similar, "MAX_RATERS", 4)  # users 0, 3, 6 and 9: all rated movie 2
    np.testing.assert_array_equal(index.co_ratings(0), [12, 12, 12])
    np.testing.assert_array_equal(index.co_ratings(2), [4, 4, 4])  # 4 raters: under the cap, exact


def test_unit_rows_leave_a_zero_vector_zero() -> None:
    unit = similar.unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0]])


def test_a_movie_nobody_rated_meets_others_by_its_content_columns_not_the_shared_unknown_vector() -> None:
    """Movies 2 and 3 are new: their item-to-item columns (the last two) are the same out-of-vocabulary vector.
    Read whole, that vector makes them each other's nearest; by content, 2 is like 0 and 3 like 1."""
    embeddings = np.array(
        [
            [1.0, 0.0, 0.0, 1.0],  # rated
            [0.0, 1.0, 1.0, 0.0],  # rated
            [1.0, 0.2, 3.0, 0.0],  # new: content like movie 0
            [0.2, 1.0, 3.0, 0.0],  # new: content like movie 1
        ],
        dtype=np.float32,
    )
    ratings = UserRatings(
        user_ids=np.array(["1", "2"]),
        indptr=np.array([0, 2, 4], dtype=np.int64),
        movie_rows=np.array([0, 1, 0, 1], dtype=np.int32),
        timestamps=np.zeros(4, dtype=np.int64),
    )
    whole = similar.SimilarIndex.build(embeddings, ratings)
    assert np.argsort(-whole.cosines(2))[1] == 3  # the shared vector decides
    index = similar.SimilarIndex.build(embeddings, ratings, item_item_dim=2)
    columns = embeddings[:, :2]
    content = similar.unit_rows(columns - columns.mean(axis=0))  # compared centred
    np.testing.assert_allclose(index.cosines(2), content @ content[2], rtol=1e-6)
    assert np.argsort(-index.cosines(2))[1] == 0 and np.argsort(-index.cosines(3))[1] == 1
    # A rated movie meets a new one by content too, and another rated movie by the whole embedding.
    expected = [1.0, 0.0, content[2] @ content[0], content[3] @ content[0]]
    np.testing.assert_allclose(index.cosines(0), expected, rtol=1e-6)


def test_with_content_embeddings_a_new_movie_meets_known_ones_read_with_the_same_unknown_id() -> None:
    """The unknown id also shifts a new movie's content columns (here by 3 in the third column): against known
    movies' own columns new movies stay each other's nearest. Against the known movies' content read with a
    blanked id (content_embeddings.npy) the shift is on both sides, and 2 is like 0, 3 like 1."""
    embeddings = np.array(
        [
            [1.0, 0.0, 0.0, 1.0],  # rated, read with its own id
            [0.0, 1.0, 0.0, 1.0],  # rated
            [1.0, 0.3, 3.0, 5.0],  # new: content like movie 0, plus the unknown id's shift
            [0.3, 1.0, 3.0, 5.0],  # new: content like movie 1
        ],
        dtype=np.float32,
    )
    blanked = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 3.0], [1.0, 0.3, 3.0], [0.3, 1.0, 3.0]], dtype=np.float32)
    ratings = UserRatings(
        user_ids=np.array(["1", "2"]),
        indptr=np.array([0, 2, 4], dtype=np.int64),
        movie_rows=np.array([0, 1, 0, 1], dtype=np.int32),
        timestamps=np.zeros(4, dtype=np.int64),
    )
    columns = similar.SimilarIndex.build(embeddings, ratings, item_item_dim=1)
    assert np.argsort(-columns.cosines(2))[1] == 3
    index = similar.SimilarIndex.build(embeddings, ratings, item_item_dim=1, content=blanked)
    assert np.argsort(-index.cosines(2))[1] == 0 and np.argsort(-index.cosines(3))[1] == 1
    unit = similar.unit_rows(blanked - blanked.mean(axis=0))  # compared centred
    np.testing.assert_allclose(index.cosines(0)[2:], unit[2:] @ unit[0], rtol=1e-6)
    np.testing.assert_allclose(index.cosines(0)[1], similar.unit_rows(embeddings)[1] @ similar.unit_rows(embeddings)[0])


def test_a_movie_of_its_own_kind_ranks_above_an_otherwise_equal_one() -> None:
    """Movies 1 and 2 have the same embedding and the same raters; only 1 shares genres with movie 0, so it
    leads by GENRE_WEIGHT x their Jaccard overlap (Horror of Horror|Thriller: 1/2). A movie with no genres
    overlaps nothing."""
    rows = [[0, 1, 2]] * 3
    ratings = UserRatings(
        user_ids=np.array(["0", "1", "2"]),
        indptr=np.array([0, 3, 6, 9], dtype=np.int64),
        movie_rows=np.array([m for r in rows for m in r], dtype=np.int32),
        timestamps=np.zeros(9, dtype=np.int64),
    )
    movies = [{"genres": ["Horror"]}, {"genres": ["Horror", "Thriller"]}, {"genres": ["Comedy"]}, {"genres": []}]
    embeddings = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    index = similar.SimilarIndex.build(embeddings, ratings, genres=similar.genre_matrix(movies))
    np.testing.assert_allclose(index.genre_overlap(0), [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(index.genre_overlap(3), [0.0, 0.0, 0.0, 0.0])
    scores = index.scores(0)
    assert scores[1] - scores[2] == pytest.approx(similar.GENRE_WEIGHT * 0.5)
    blind = dataclasses.replace(index, genre_weight=0.0).scores(0)
    assert blind[1] == pytest.approx(blind[2])
    assert similar.GENRE_WEIGHT > 0  # the served definition reads genres (benchmarks/similar_movies.py)
