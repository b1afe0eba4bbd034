"""The one contract test across the boundary: MovieLens files -> train -> export -> serve -> HTTP JSON."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from training.config import TrainConfig
from training.data import load_movielens
from training.fetch import fetch
from training.train import train_versions


def _wait_ready(client: TestClient, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.1)


def _rated_movies(data_dir: Path, config: TrainConfig, user_id: int) -> set[str]:
    """Every movie the user rated, from the files alone (the refit version trained on all of them)."""
    ratings = load_movielens(data_dir, config.dataset).ratings
    return set(ratings.loc[ratings["user_id"] == user_id, "movie_id"].astype(str))


def _check_served(models_dir: Path, data_dir: Path, user_id: int, k: int) -> dict:  # type: ignore[type-arg]
    version = (models_dir / "CURRENT").read_text().strip()
    manifest = json.loads((models_dir / version / "manifest.json").read_text())
    config = TrainConfig(**manifest["config"])
    with TestClient(create_app(Settings(models_dir=models_dir, poll_seconds=0))) as client:
        _wait_ready(client)
        assert client.get("/model").json()["version"] == version
        in_range = client.get("/recommend", params={"user_id": user_id, "timestamp": 885_000_000, "k": k})
        at_now = client.get("/recommend", params={"user_id": user_id, "k": k})
    for response in (in_range, at_now):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == version and body["known_user"] is True and body["personalised"]
        movie_ids = [item["movie_id"] for item in body["items"]]
        assert len(movie_ids) == len(set(movie_ids)) == k
        # The served version is refit on every rating, so every movie the user rated is excluded.
        assert not set(movie_ids) & _rated_movies(data_dir, config, user_id)
        scores = [item["score"] for item in body["items"]]
        assert scores == sorted(scores, reverse=True)
    assert at_now.json()["effective_timestamp"] == manifest["query"]["timestamp_max"]
    return in_range.json()


def test_tiny_files_to_http(tiny_models_dir: Path, tiny_data_dir: Path) -> None:
    _check_served(tiny_models_dir, tiny_data_dir, user_id=1, k=5)


@pytest.mark.slow
def test_real_movielens_100k_to_http(tmp_path: Path) -> None:
    """Real ML-100K (RecBole wheel from PyPI when GroupLens is unreachable), a short training, served."""
    data_dir = tmp_path / "data"
    fetch("ml-100k", data_dir)
    models_dir = tmp_path / "models"
    config = TrainConfig(epochs=5)
    version_dir = train_versions([config], data_dir, models_dir, promote_version=True, progress=False)[0].version_dir
    metrics = json.loads((version_dir / "manifest.json").read_text())["metrics"]
    assert metrics["test_size"] == 20_000
    # The baseline is deterministic given the seeded split; it matches the figure measured on this data.
    assert metrics["most_popular"]["A"]["top_100"] == pytest.approx(0.295, abs=0.01)
    # The model beats the most-popular list on every protocol, with a margin (5 epochs).
    for protocol in ("A", "B", "T"):
        model, popular = metrics["model"][protocol]["top_100"], metrics["most_popular"][protocol]["top_100"]
        assert model > popular + 0.05, (protocol, model, popular)
    # Protocol T: the most-popular figures measured independently on this data (T top-10 0.073, top-100 0.356).
    assert metrics["temporal"] == {"how": "latest", "after_id": 0, "test_size": 20_000}
    assert metrics["most_popular"]["T"]["top_100"] == pytest.approx(0.356, abs=0.01)
    assert metrics["most_popular"]["T"]["top_10"] == pytest.approx(0.073, abs=0.01)
    assert np.isfinite(np.load(version_dir / "candidate_embeddings.npy")).all()
    body = _check_served(models_dir, data_dir, user_id=42, k=10)
    assert all(item["title"].endswith(")") for item in body["items"])  # "Title (year)", as MovieLens writes it
    # At now, 28 years past the data, users still get their own lists (unclamped, all got the same one).
    users = [str(u) for u in range(1, 22)]
    end = json.loads((version_dir / "manifest.json").read_text())["query"]["timestamp_max"]
    with TestClient(create_app(Settings(models_dir=models_dir, poll_seconds=0))) as client:
        _wait_ready(client)
        at_now = _mean_overlap([_top_10(client, user, None) for user in users])
        inside = _mean_overlap([_top_10(client, user, end - 30 * 86_400) for user in users])
    assert at_now <= inside + 0.05, (at_now, inside)
    _check_listening(models_dir, data_dir, tmp_path)
    _check_new_movies(models_dir, tmp_path)


def _check_listening(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """What issue 19 asks of the real model, over HTTP: reasons are the user's own ratings, "similar" differs
    from movie to movie (no list shared by everyone), and a user with nothing rated gets what is rated now."""
    rated = _rated_movies(data_dir, TrainConfig(), 42)
    settings = Settings(models_dir=models_dir, poll_seconds=0, ratings_url=f"sqlite:///{tmp_path}/ratings.db")
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        for moment in ({}, {"timestamp": 885_000_000}):
            body = client.get("/recommend", params={"user_id": 42, "k": 10, "explain": "true", **moment}).json()
            named = [m["movie_id"] for item in body["items"] for m in item["because"]]
            assert named and set(named) <= rated, named
        tops = {}
        for movie in (
            "50",
            "71",
            "183",
            "195",
            "172",
            "1",
        ):  # Star Wars, Lion King, Alien, Terminator, Empire, Toy Story
            items = client.get(f"/movies/{movie}/similar", params={"k": 10}).json()["items"]
            tops[movie] = {item["movie_id"] for item in items}
        # Franchise and genre neighbours share much (Star Wars and Empire: 7 of 10 measured), the six lists as
        # a whole do not: the old dot product started every list with the same 1997 hits.
        overlaps = [len(a & b) for a, b in itertools.combinations(tops.values(), 2)]
        assert np.mean(overlaps) <= 4 and not set.intersection(*tops.values()), tops
        stranger = client.get("/recommend", params={"user_id": 987654321, "k": 10}).json()
        assert stranger["personalised"] is False and all(item["because"] is None for item in stranger["items"])
        # A rating's value counts: the same five horror films rated 5 stars by one new user and 1 star by
        # another. The first gets horror; the second, whose ratings are all dislikes, gets the popular list and
        # no horror (measured: 4 and 0 in 10 on this 5-epoch model, 10 and 0 on the full default).
        horror = ("288", "185", "200", "234", "219")  # Scream, Psycho, The Shining, Jaws, A Nightmare on Elm Street
        counts = {}
        for user, stars in (("987650005", 5.0), ("987650001", 1.0)):
            for movie in horror:  # rated inside the data's time, so asking there reads them too
                rating = {"user_id": user, "movie_id": movie, "rating": stars, "timestamp": 880_000_000}
                posted = client.post("/ratings", json=rating)
                assert posted.status_code == 201, posted.text
            for moment in ({}, {"timestamp": 885_000_000}):
                answer = client.get("/recommend", params={"user_id": user, "k": 10, **moment}).json()
                assert answer["personalised"] is (stars == 5.0), answer
                counts[stars, bool(moment)] = sum("Horror" in item["genres"] for item in answer["items"])
        for inside in (False, True):
            assert counts[5.0, inside] >= counts[1.0, inside] + 2, counts


NEW_MOVIES: list[dict[str, Any]] = [
    {"movie_id": "990001", "title": "The Conjuring", "genres": ["Horror"], "year": 2013},
    {"movie_id": "990002", "title": "Paddington 2", "genres": ["Children's", "Comedy"], "year": 2017},
    {"movie_id": "990003", "title": "Mad Max: Fury Road", "genres": ["Action", "Adventure", "Sci-Fi"], "year": 2015},
    {"movie_id": "990004", "title": "Star Trek Beyond", "genres": ["Action", "Adventure", "Sci-Fi"], "year": 2016},
    {"movie_id": "990005", "title": "Toy Story 3", "genres": ["Animation", "Children's", "Comedy"], "year": 2010},
]


def _check_new_movies(models_dir: Path, tmp_path: Path) -> None:
    """Issue 21 on the real model, over HTTP: movies added while serving have similar lists of their own kind,
    made of movies people rated rather than of each other (each new movie's content is compared with every
    movie's content read through the tower as a new movie's is), and a fan of the old film finds the sequel."""
    settings = Settings(
        models_dir=models_dir,
        poll_seconds=0,
        ratings_url=f"sqlite:///{tmp_path}/catalogue.db",
        admin_token="e2e-admin",  # type: ignore[arg-type]
    )
    new_ids = {movie["movie_id"] for movie in NEW_MOVIES}
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        added = client.post("/movies", json={"movies": NEW_MOVIES}, headers={"Authorization": "Bearer e2e-admin"})
        assert added.status_code == 201, added.text
        for movie in NEW_MOVIES:
            answer = client.get(f"/movies/{movie['movie_id']}/similar", params={"k": 10})
            assert answer.status_code == 200, answer.text
            items = answer.json()["items"]
            alike = sum(bool(set(item["genres"]) & set(movie["genres"])) for item in items)
            others = sum(item["movie_id"] in new_ids for item in items)
            # Measured on this 5-epoch model: 10, 10, 8, 10, 10 share a genre; other new movies 0, 0, 1, 1, 0
            # (Mad Max and Star Trek Beyond list each other: the same genres, both new).
            assert alike >= 7 and others <= 1, (movie["title"], [item["title"] for item in items])
        toy_story_3 = {item["movie_id"] for item in client.get("/movies/990005/similar").json()["items"]}
        assert "1" in toy_story_3, toy_story_3  # Toy Story (measured: first)
        # It reaches the users who like its kind before anyone rated it: a Disney fan's list holds it higher
        # than a horror fan's, now and inside the data's time (measured on this 5-epoch model before the EASE
        # prior: ranks 62 and 59 of 100 for the Disney fan, not in the horror fan's 100; on the full default
        # with the prior, whose rows an added movie borrows from its content neighbours: 17 and 22, absent).
        # With zeros for its prior columns it fell out of the Disney fan's 100.
        for moment in ({}, {"timestamp": 885_000_000}):
            ranks = {}
            for fan, history in (("disney", ["1", "71", "95", "99"]), ("horror", ["288", "185", "200", "234", "219"])):
                request = {"user_id": "987650100", "k": 100, "history": history, **moment}
                answer = client.post("/recommend", json=request)
                assert answer.status_code == 200, answer.text
                listed = [item["movie_id"] for item in answer.json()["items"]]
                ranks[fan] = listed.index("990005") if "990005" in listed else 100
            assert ranks["disney"] < ranks["horror"], (moment, ranks)


def _top_10(client: TestClient, user: str, timestamp: int | None) -> set[str]:
    params = {"user_id": user, "k": 10} | ({} if timestamp is None else {"timestamp": timestamp})
    return {item["movie_id"] for item in client.get("/recommend", params=params).json()["items"]}


def _mean_overlap(lists: list[set[str]]) -> float:
    pairs = list(itertools.combinations(lists, 2))
    return sum(len(a & b) / 10 for a, b in pairs) / len(pairs)
