"""A living catalogue on the tiny trained version, through HTTP: add, rate, recommend, change, withdraw, restore.

On SQLite and on a real PostgreSQL; two apps on one database agree within the refresh period; a restart keeps
everything. The added movie's embedding is checked against the exported candidate tower itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from service import similar
from service.borrowed_prior import with_borrowed_prior
from service.config import Settings
from service.live_version import base_of
from tests.contract.conftest import postgres_server, store_url  # noqa: F401  # the databases, as fixtures here
from tests.service.conftest import assert_error, serving, wait_until
from tests.synth import GENRES
from tests.towers import candidate_tower_embeddings

TOKEN = "s3cret"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NEW = {"movie_id": "990001", "title": "Zyzzyva Nights", "genres": ["Comedy"], "year": 1996}
REFRESH = 0.2  # seconds between a replica's reads of the catalogue store in these tests


def app(models_dir: Path, url: str) -> Any:
    return serving(models_dir, ratings_url=url, admin_token=TOKEN, catalogue_refresh_seconds=REFRESH)


def recommended(client: TestClient, user_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every movie the user may get (k above the catalogue's size), at now."""
    response = client.get("/recommend", params={"user_id": user_id, "k": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["movie_id"] for item in items]


def searched(client: TestClient, q: str) -> list[str]:
    return [m["movie_id"] for m in client.get("/movies", params={"q": q}).json()]


def similar_to(client: TestClient, movie_id: str) -> list[str]:
    response = client.get(f"/movies/{movie_id}/similar", params={"k": 100})
    assert response.status_code == 200, response.text
    return ids(response.json()["items"])


def tower_embedding(version_dir: Path, movie_id: str, title: str, genres: str) -> np.ndarray:
    """The exported candidate tower on one movie (its genres "A|B" only where the tower takes them)."""
    movie = {"movie_id": movie_id, "title": title, "genres": genres.split("|") if genres else []}
    return candidate_tower_embeddings(version_dir, [movie])[0]


def test_an_added_movie_is_rated_recommended_changed_withdrawn_and_restored(
    tiny_models_dir: Path,
    tiny_version_dir: Path,
    store_url: str,  # noqa: F811
) -> None:
    with app(tiny_models_dir, store_url) as client:
        assert client.post("/movies", json=NEW, headers=ADMIN).status_code == 201
        # Rateable at once, on this replica, and shown among the user's ratings with its title.
        rated = client.post("/ratings", json={"user_id": "7", "movie_id": "990001", "rating": 4.5})
        assert rated.status_code == 201, rated.text
        mine = client.get("/users/7/ratings").json()
        assert (mine[0]["movie_id"], mine[0]["title"], mine[0]["source"]) == ("990001", "Zyzzyva Nights", "stored")
        assert "990001" not in ids(recommended(client, "7"))  # rated: excluded like any seen movie

        # Recommendable, ranked by the candidate tower's own embedding of it (title with its year), its EASE
        # prior columns (zeros from the tower: nobody rated it) borrowed from the known movies it reads like.
        items = recommended(client, "3")
        assert "990001" in ids(items)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
        movies = json.loads((tiny_version_dir / "movies.json").read_text())
        served = client.app.state.service.registry.current  # type: ignore[attr-defined]
        vector = tower_embedding(tiny_version_dir, "990001", "Zyzzyva Nights (1996)", "Comedy")
        row, prior = served.candidate_embeddings[served.row_of_movie["990001"]], served.manifest.item_item_prior
        assert prior and not vector[-prior:].any() and row[-prior:].any()
        np.testing.assert_allclose(row[:-prior], vector[:-prior], atol=1e-6)
        lent = with_borrowed_prior(base_of(served), vector[None], Settings().borrowed_prior_neighbours)[0]
        np.testing.assert_allclose(row, lent, atol=1e-6)
        assert served.num_movies == len(movies) + 1 and np.isfinite(vector).all()
        assert "990001" in ids(recommended(client, "3", genres="Comedy"))
        assert "990001" not in ids(recommended(client, "3", genres="Drama"))

        assert searched(client, "zyzzyva") == ["990001"]
        assert len(similar_to(client, "990001")) == len(movies)  # every other movie, itself left out
        assert "990001" in similar_to(client, "1")

        # Changed: its new title is searched and shown.
        client.patch("/movies/990001", json={"title": "Zyzzyva Mornings"}, headers=ADMIN)
        assert searched(client, "mornings") == ["990001"] and searched(client, "nights") == []
        # Its new genres are what its similar list reads: it now overlaps Drama, not Comedy.
        client.patch("/movies/990001", json={"genres": ["Drama"]}, headers=ADMIN)
        served = client.app.state.service.registry.current  # type: ignore[attr-defined]
        overlap = similar.prepare(served).genre_overlap(served.row_of_movie["990001"])
        expected = [1 / len(m["genres"]) if "Drama" in m["genres"] else 0.0 for m in served.movies]
        np.testing.assert_allclose(overlap, expected, rtol=1e-6)
        assert overlap[served.row_of_movie["990001"]] == 1.0

        # Withdrawn, it leaves every answer at once; so does a MovieLens movie.
        for movie_id in ("990001", "1"):
            withdrawn = client.patch(f"/movies/{movie_id}", json={"available": False}, headers=ADMIN)
            assert withdrawn.status_code == 200 and withdrawn.json()["available"] is False
        title_of_1 = movies[0]["title"]
        for user_id in ("3", "123456789"):  # a known user, and a user with no ratings (the popularity ranking)
            assert not {"990001", "1"} & set(ids(recommended(client, user_id)))
        assert not {"990001", "1"} & set(ids(recommended(client, "3", genres="Comedy")))
        assert not {"990001", "1"} & set(similar_to(client, "2"))
        assert searched(client, "mornings") == [] and "1" not in searched(client, title_of_1[:8])
        assert_error(client.get("/movies/990001/similar"), 404, "unknown_movie", "withdrawn")

        # Restored, it is back.
        for movie_id in ("990001", "1"):
            client.patch(f"/movies/{movie_id}", json={"available": True}, headers=ADMIN)
        assert {"990001", "1"} <= set(ids(recommended(client, "3")))
        assert {"990001", "1"} <= set(similar_to(client, "2"))
        assert searched(client, "mornings") == ["990001"]


def test_two_replicas_agree_within_the_refresh_and_a_restart_keeps_everything(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ratings.db"
    with app(tiny_models_dir, url) as first, app(tiny_models_dir, url) as second:
        assert_error(
            second.post("/ratings", json={"user_id": "7", "movie_id": "990001", "rating": 4.0}), 422, "not_in_catalogue"
        )
        assert first.post("/movies", json=NEW, headers=ADMIN).status_code == 201
        started = time.monotonic()
        wait_until(lambda: searched(second, "zyzzyva") == ["990001"], seconds=10)
        assert time.monotonic() - started < 10 * REFRESH + 2
        assert second.post("/ratings", json={"user_id": "7", "movie_id": "990001", "rating": 4.0}).status_code == 201
        assert "990001" in ids(recommended(second, "3"))

        second.patch("/movies/990001", json={"available": False}, headers=ADMIN)
        wait_until(lambda: "990001" not in ids(recommended(first, "3")), seconds=10)
        assert searched(first, "zyzzyva") == []
    with app(tiny_models_dir, url) as restarted:
        assert searched(restarted, "zyzzyva") == []
        restarted.patch("/movies/990001", json={"available": True}, headers=ADMIN)
        assert searched(restarted, "zyzzyva") == ["990001"]
        assert restarted.get("/users/7/ratings").json()[0]["title"] == "Zyzzyva Nights"


def test_a_movie_added_through_one_replica_is_rateable_at_once_on_another(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ratings.db"
    rating = {"user_id": "7", "movie_id": "990001", "rating": 4.0}
    slow = serving(tiny_models_dir, ratings_url=url, admin_token=TOKEN, catalogue_refresh_seconds=3600)
    with app(tiny_models_dir, url) as first, slow as second:
        assert_error(second.post("/ratings", json=rating), 422, "not_in_catalogue")
        assert first.post("/movies", json=NEW, headers=ADMIN).status_code == 201
        # `second` would not read the catalogue store for an hour: the rating makes it read now.
        assert second.post("/ratings", json=rating).status_code == 201
        assert searched(second, "zyzzyva") == ["990001"]
        assert second.get("/users/7/ratings").json()[0]["title"] == "Zyzzyva Nights"
        assert_error(second.post("/ratings", json={**rating, "movie_id": "990002"}), 422, "not_in_catalogue")


def test_a_tower_that_reads_genres_places_an_added_movie_by_them(
    tiny_data_dir: Path, tmp_path_factory: Any, tmp_path: Path
) -> None:
    """Trained with candidate_genres, the served tower reads an added movie's genres: new movies with one title
    and different genres get different similar lists, each with more of its own genre than the others' lists."""
    from tests.conftest import TINY_TRAINING
    from training.config import TrainConfig
    from training.train import train_versions

    models = tmp_path_factory.mktemp("genres_models")
    config = TrainConfig(**TINY_TRAINING, candidate_genres=True, evaluate=False)
    train_versions([config], tiny_data_dir, models, promote_version=True, progress=False)
    twins = [{**NEW, "movie_id": f"99100{i}", "title": "Twin Peaks Movie", "genres": [g]} for i, g in enumerate(GENRES)]
    with app(models, f"sqlite:///{tmp_path}/ratings.db") as client:
        assert client.post("/movies", json={"movies": twins}, headers=ADMIN).status_code == 201
        lists = {}
        for twin, genre in zip(twins, GENRES, strict=True):
            response = client.get(f"/movies/{twin['movie_id']}/similar", params={"k": 10})
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            lists[genre] = [item["genres"] for item in items if not item["movie_id"].startswith("99")]
        for genre in GENRES:
            own = sum(g == [genre] for g in lists[genre]) / len(lists[genre])
            others = [sum(g == [genre] for g in lists[o]) / len(lists[o]) for o in GENRES if o != genre]
            assert own > max(others), (genre, own, others)


def test_a_movie_dated_after_every_title_is_read_without_its_year(
    tiny_models_dir: Path, tiny_version_dir: Path, tmp_path: Path
) -> None:
    """The tiny version's titles name 1990-1999. A movie added from 2011 reaches the candidate tower as its title
    alone (RECSYS_TITLE_YEAR_OUTSIDE=drop, the default), while answers show the title as stored; one from
    1996 is read with its year, as trained."""
    later = {**NEW, "movie_id": "990002", "title": "Chasing Amy Again", "year": 2011}  # words the tower knows
    with app(tiny_models_dir, f"sqlite:///{tmp_path}/ratings.db") as client:
        assert client.post("/movies", json={"movies": [NEW, later]}, headers=ADMIN).status_code == 201
        served = client.app.state.service.registry.current  # type: ignore[attr-defined]
        prior = served.manifest.item_item_prior
        for movie_id, read_as, not_as in (
            ("990002", "Chasing Amy Again", "Chasing Amy Again (2011)"),
            ("990001", "Zyzzyva Nights (1996)", "Zyzzyva Nights"),
        ):
            row = served.candidate_embeddings[served.row_of_movie[movie_id]][:-prior]
            np.testing.assert_allclose(
                row, tower_embedding(tiny_version_dir, movie_id, read_as, "Comedy")[:-prior], atol=1e-6
            )
            assert not np.allclose(
                row, tower_embedding(tiny_version_dir, movie_id, not_as, "Comedy")[:-prior], atol=1e-4
            )
        assert client.get("/movies", params={"q": "amy again"}).json()[0]["title"] == "Chasing Amy Again"  # as stored
