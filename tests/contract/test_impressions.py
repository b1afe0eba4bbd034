"""The impressions store on SQLite and PostgreSQL: recording, crediting (window edges, repeats), tallies, retention."""

from __future__ import annotations

import pytest

from contract.impressions import INSERT_CHUNK, Impression, ImpressionStore, ImpressionStoreError
from contract.ratings import Rating, RatingsStore

DAY = 86_400
WEEK = 7 * DAY
T0 = 885_000_000


def shown(rid: str, user: str, version: str, at: int, *movies: str, personalised: bool = True) -> Impression:
    return Impression(rid, user, version, at, tuple(movies), personalised)


@pytest.fixture
def impressions(store: RatingsStore) -> ImpressionStore:
    result = ImpressionStore(store)
    result.create_schema()
    result.create_schema()  # a second replica starting: nothing breaks, nothing doubles
    return result


def rate(store: RatingsStore, user: str, movie: str, at: int, stars: float = 4.0) -> int:
    return store.add([Rating(user, movie, stars, at)])[0]


def test_an_impression_round_trips_with_its_movies_in_rank_order(impressions: ImpressionStore) -> None:
    impressions.add([shown("a" * 32, "7", "v1", T0, "50", "1", "181"), shown("b" * 32, "8", "v1", T0, "2")])
    assert impressions.impression("a" * 32) == shown("a" * 32, "7", "v1", T0, "50", "1", "181")
    assert impressions.impression("missing") is None
    stats = impressions.online_stats()["v1"]
    assert (stats.impressions, stats.personalised, stats.coverage, stats.rated) == (2, 2, 4, 0)


def test_a_batch_longer_than_one_insert_statement_is_stored_whole(impressions: ImpressionStore) -> None:
    count = 2 * INSERT_CHUNK + 7  # two full statements and a short one, in one transaction
    batch = [shown(f"{i:032x}", str(i % 13), "v1" if i % 3 else "v2", T0 + i, str(i), str(i + 1)) for i in range(count)]
    impressions.add(batch)
    assert impressions.count() == count
    for i in (0, INSERT_CHUNK - 1, INSERT_CHUNK, count - 1):  # each statement's edges kept their own values
        assert impressions.impression(f"{i:032x}") == batch[i]
    stats = impressions.online_stats()
    assert (stats["v1"].impressions + stats["v2"].impressions, stats["v2"].impressions) == (count, (count + 2) // 3)


def test_a_rating_is_credited_inside_the_window_edges_only(store: RatingsStore, impressions: ImpressionStore) -> None:
    impressions.add(
        [
            shown("edge", "1", "v1", T0 - WEEK, "10", "11"),  # exactly a window before: credited
            shown("early", "2", "v1", T0 - WEEK - 1, "10"),  # one second too early
            shown("after", "3", "v1", T0 + 1, "10"),  # shown after the rating
            shown("same", "4", "v1", T0, "12", "10"),  # shown at the rating's moment: credited at rank 2
        ]
    )
    for user in "1234":
        rate(store, user, "10", T0, stars=5.0 if user == "1" else 3.0)
    credits = impressions.credit(WEEK)
    assert sorted((c.recommendation_id, c.rank, c.liked) for c in credits) == [("edge", 1, True), ("same", 2, False)]
    stats = impressions.online_stats()["v1"]
    assert (stats.impressions, stats.rated, stats.liked) == (4, 2, 1)
    assert stats.rated_share == pytest.approx(0.5) and stats.liked_share == pytest.approx(0.25)
    assert stats.hits_by_rank == {1: 1, 2: 1} and stats.liked_hits_by_rank == {1: 1, 2: 0}
    assert impressions.credit(WEEK) == []  # each rating once


def test_the_newest_of_repeated_impressions_gets_the_credit(store: RatingsStore, impressions: ImpressionStore) -> None:
    impressions.add([shown("old", "1", "v1", T0 - 100, "10", "20"), shown("new", "1", "v2", T0 - 10, "30", "10")])
    impressions.add([shown("later", "1", "v1", T0 + 5, "10")])  # after the rating: not a cause of it
    rate(store, "1", "10", T0, stars=4.5)
    rate(store, "1", "20", T0 + 1, stars=2.0)  # only the old one showed 20: it gets this one
    rate(store, "1", "99", T0 + 2)  # never shown: no credit
    credits = impressions.credit(WEEK)
    assert [(c.recommendation_id, c.version, c.rank) for c in credits] == [("new", "v2", 2), ("old", "v1", 2)]
    stats = impressions.online_stats()
    assert (stats["v2"].rated, stats["v2"].liked, stats["v2"].hits_by_rank) == (1, 1, {2: 1})
    assert (stats["v1"].impressions, stats["v1"].rated, stats["v1"].liked, stats["v1"].credited) == (2, 1, 0, 1)


def test_two_ratings_of_one_impression_count_it_once(store: RatingsStore, impressions: ImpressionStore) -> None:
    impressions.add([shown("one", "1", "v1", T0, "10", "20", "30")])
    rate(store, "1", "10", T0 + 1, stars=5.0)
    rate(store, "1", "30", T0 + 2, stars=5.0)
    assert len(impressions.credit(WEEK)) == 2
    stats = impressions.online_stats()["v1"]
    assert (stats.impressions, stats.rated, stats.liked, stats.credited, stats.credited_liked) == (1, 1, 1, 2, 2)
    assert stats.hits_by_rank == {1: 1, 3: 1}


def test_fresh_ratings_wait_until_settled_and_replicas_agree(
    store: RatingsStore, store_url: str, impressions: ImpressionStore
) -> None:
    impressions.add([shown("x", "1", "v1", T0, "10")])
    rate(store, "1", "10", T0)
    assert impressions.credit(WEEK, settle_seconds=3600) == []  # its impression might still be queued somewhere
    with RatingsStore(store_url) as other:  # another replica credits it; this one then finds nothing left
        assert [c.recommendation_id for c in ImpressionStore(other).credit(WEEK)] == ["x"]
        assert ImpressionStore(other).online_stats() == impressions.online_stats()
    assert impressions.credit(WEEK) == []


def test_retention_prunes_old_impressions_but_keeps_the_tallies(
    store: RatingsStore, impressions: ImpressionStore
) -> None:
    impressions.add([shown("old", "1", "v1", T0, "10")], recorded_at=1000)
    impressions.add([shown("new", "1", "v1", T0, "20")], recorded_at=5000)
    assert impressions.prune(older_than=2000) == 1
    assert impressions.impression("old") is None and impressions.impression("new") is not None
    rate(store, "1", "10", T0)  # its impression is gone: nothing to credit it to
    assert impressions.credit(WEEK) == []
    assert impressions.online_stats()["v1"].impressions == 2


def test_a_store_failure_says_what_failed_and_where(store: RatingsStore, impressions: ImpressionStore) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE impressions")
    with pytest.raises(ImpressionStoreError) as failed:
        impressions.add([shown("a" * 32, "7", "v1", T0, "50")])
    message = str(failed.value)
    assert message.startswith("cannot store impressions at ") and "impressions" in message.split("(", 1)[1]
    assert store.engine.url.render_as_string(hide_password=True) in message
