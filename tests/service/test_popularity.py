"""The served fallback follows what is rated now: stored ratings reach the ranking on the next refresh, on every
replica alike, and a failing store keeps the last ranking."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from contract.popularity import DAY_SECONDS, DecayedPopularity
from contract.ratings import Rating, RatingsStore
from service.artifacts import ModelVersion, load_version
from service.popularity import RecentPopularity
from tests.service.conftest import V1

HALF_LIFE = 7 * DAY_SECONDS


@pytest.fixture(scope="module")
def version(shared_models_dir: Path) -> ModelVersion:
    return load_version(shared_models_dir / V1, max_batch=1, min_recall=0.8)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RatingsStore]:
    with RatingsStore(f"sqlite:///{tmp_path}/ratings.db") as opened:
        opened.create_schema()
        yield opened


def _rate(store: RatingsStore, *movie_ids: str, timestamp: int | None = None) -> list[int]:
    at = int(time.time()) if timestamp is None else timestamp
    return store.add([Rating(user_id="9000", movie_id=m, rating=4.0, timestamp=at) for m in movie_ids])


def _versions_own(version: ModelVersion) -> np.ndarray:
    return DecayedPopularity.from_user_ratings(version.ratings, version.num_movies, HALF_LIFE).ranking()


def test_a_newly_stored_rating_leads_the_ranking_after_the_next_refresh(
    version: ModelVersion, store: RatingsStore
) -> None:
    popularity = RecentPopularity(HALF_LIFE)
    assert popularity.ranking(version) is version.popularity  # nothing counted yet: the all-time ranking
    popularity.refresh(version, store)
    np.testing.assert_array_equal(popularity.ranking(version), _versions_own(version))
    last = version.movies[int(popularity.ranking(version)[-1])]["movie_id"]
    _rate(store, last)
    assert version.movies[int(popularity.ranking(version)[0])]["movie_id"] != last  # requests never read the store
    popularity.refresh(version, store)
    ranking = popularity.ranking(version)
    assert version.movies[int(ranking[0])]["movie_id"] == last  # one rating today outweighs 1998's
    other = version.movies[int(ranking[5])]["movie_id"]
    _rate(store, other, other, "no-such-movie")  # a movie outside the catalogue is skipped
    popularity.refresh(version, store)
    assert [version.movies[int(row)]["movie_id"] for row in popularity.ranking(version)[:2]] == [other, last]
    assert sorted(popularity.ranking(version).tolist()) == list(range(version.num_movies))
    described = popularity.describe()
    assert described["last_stored_id"] == 4 and described["ratings_counted"] == len(version.ratings.movie_rows) + 3


def test_a_store_error_keeps_the_last_ranking_and_misses_no_rating(
    version: ModelVersion, store: RatingsStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    popularity = RecentPopularity(HALF_LIFE)
    _rate(store, "7")
    popularity.refresh(version, store)
    before = popularity.ranking(version)
    _rate(store, "9", "9")  # stored, then the store fails before a refresh reads it
    admin = sa.create_engine(f"sqlite:///{tmp_path}/ratings.db")
    with admin.begin() as conn:
        conn.execute(sa.text("ALTER TABLE ratings RENAME TO ratings_away"))
    with caplog.at_level(logging.INFO, logger="service.popularity"):
        popularity.refresh(version, store)
        popularity.refresh(version, store)
        assert popularity.ranking(version) is before
        assert popularity.describe()["store_failing"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "keeps its last ranking" in warnings[0].getMessage()  # once per outage
        with admin.begin() as conn:
            conn.execute(sa.text("ALTER TABLE ratings_away RENAME TO ratings"))
        popularity.refresh(version, store)
    admin.dispose()
    assert "reads the ratings store again" in caplog.records[-1].getMessage()
    assert version.movies[int(popularity.ranking(version)[0])]["movie_id"] == "9"
    assert popularity.describe()["ratings_counted"] == len(version.ratings.movie_rows) + 3


def test_a_new_version_counts_from_its_own_cutoff_and_replicas_agree(
    version: ModelVersion, store: RatingsStore
) -> None:
    now = int(time.time())
    for i, movie_id in enumerate(["3", "3", "5", "8", "8", "8", "12", "5", "5", "5"]):
        _rate(store, movie_id, timestamp=now - 3600 * i)
    # The next version trained on store ids <= 6 (its seen.npz would hold them; this one stands in for it).
    data = version.manifest.data.model_copy(update={"ratings_cutoff_id": 6})
    retrained = dataclasses.replace(
        version, name="retrained", manifest=version.manifest.model_copy(update={"data": data})
    )
    often, once = RecentPopularity(HALF_LIFE), RecentPopularity(HALF_LIFE)
    often.refresh(version, store)
    often.refresh(retrained, store)
    once.refresh(retrained, store)
    expected = DecayedPopularity.from_user_ratings(version.ratings, version.num_movies, HALF_LIFE)
    expected.add(np.array([11, 4, 4, 4]), np.array([now - 3600 * i for i in range(6, 10)]))  # ids 7..10 only
    np.testing.assert_array_equal(once.ranking(retrained), expected.ranking())
    assert often.ranking(version) is version.popularity  # a ranking belongs to the version it counted for
    for movie_id in ["20", "21", "20", "20", "20"]:
        _rate(store, movie_id)
        often.refresh(retrained, store)  # one replica reads each new rating, the other all of them at once
    once.refresh(retrained, store)
    assert often.ranking(retrained).tobytes() == once.ranking(retrained).tobytes()
    assert once.ranking(retrained)[0] == 19  # movie "20": four ratings now outweigh three of hours ago


def test_the_background_task_follows_the_served_version(version: ModelVersion, store: RatingsStore) -> None:
    popularity = RecentPopularity(HALF_LIFE)

    async def scenario() -> int:
        task = asyncio.create_task(popularity.watch(lambda: version, lambda: store, 0.01))
        try:
            _rate(store, "30")
            deadline = time.monotonic() + 10
            while popularity.ranking(version)[0] != 29:
                assert time.monotonic() < deadline, "the ranking never followed the store"
                await asyncio.sleep(0.01)
            return int(popularity.ranking(version)[0])
        finally:
            task.cancel()

    assert asyncio.run(scenario()) == 29


def test_a_bad_half_life_fails_at_startup() -> None:
    with pytest.raises(ValueError, match="half_life_seconds"):
        RecentPopularity(0.0)


def test_a_user_with_no_ratings_gets_what_is_rated_now_through_the_api(shared_models_dir: Path, tmp_path: Path) -> None:
    """At now the fallback is the recent ranking, counted as the version loads and followed as ratings are
    stored (every replica reads the same store); at an explicit moment it stays the version's all-time one."""
    from tests.service.conftest import serving, wait_until

    url = f"sqlite:///{tmp_path}/ratings.db"
    with serving(shared_models_dir, ratings_url=url, popular_refresh_seconds=0.1) as client:
        version = load_version(shared_models_dir / V1, max_batch=1, min_recall=0.8)
        recent = DecayedPopularity.from_user_ratings(version.ratings, version.num_movies, 14 * DAY_SECONDS).ranking()
        top = [version.movies[row]["movie_id"] for row in recent[:5].tolist()]
        answer = client.get("/recommend", params={"user_id": "777777", "k": 5}).json()
        assert not answer["personalised"] and [item["movie_id"] for item in answer["items"]] == top
        at_1998 = client.get("/recommend", params={"user_id": "777777", "k": 5, "timestamp": 885_000_000}).json()
        all_time = [version.movies[row]["movie_id"] for row in version.popularity[:5].tolist()]
        assert [item["movie_id"] for item in at_1998["items"]] == all_time
        tail = version.movies[int(recent[-1])]["movie_id"]  # the least rated lately: one rating now leads
        assert client.post("/ratings", json={"user_id": "888888", "movie_id": tail, "rating": 4.0}).status_code == 201

        def first() -> str:
            return str(client.get("/recommend", params={"user_id": "777777", "k": 1}).json()["items"][0]["movie_id"])

        wait_until(lambda: first() == tail, seconds=10)
