"""The catalogue store on SQLite and on a real PostgreSQL: adds, changes, the incremental read, duplicates."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from contract.catalogue import (
    CatalogueStore,
    CatalogueStoreError,
    DuplicateMovieError,
    MovieChange,
    NewMovie,
    fold,
)


@pytest.fixture
def catalogue(store_url: str) -> Iterator[CatalogueStore]:
    store = CatalogueStore(store_url)
    store.create_schema()
    store.create_schema()  # a second replica starting: no error
    yield store
    store.close()


def test_adds_and_changes_fold_into_each_movies_state(catalogue: CatalogueStore, store_url: str) -> None:
    assert (catalogue.last_id(), catalogue.changes_after(0)) == (0, [])
    first = catalogue.add([NewMovie("5001", "Arrival (2016)", ("Drama", "Sci-Fi"), 2016), NewMovie("5002", "Up", ())])
    change = catalogue.change(MovieChange("5001", title="Arrival", available=False))
    base = catalogue.change(MovieChange("1", available=False))  # a MovieLens movie: only what changed

    assert first == sorted(first) and change > first[-1] and base > change
    with CatalogueStore(store_url) as replica:
        state = fold({}, replica.changes_after(0))
        assert replica.last_id() == base
    arrival = state["5001"]
    assert (arrival.added, arrival.title, arrival.genres, arrival.year, arrival.available, arrival.last_id) == (
        True,
        "Arrival",
        ("Drama", "Sci-Fi"),
        2016,
        False,
        change,
    )
    assert (state["5002"].genres, state["5002"].year, state["5002"].available) == ((), None, True)
    assert (state["1"].added, state["1"].title, state["1"].genres, state["1"].available) == (False, None, None, False)
    assert catalogue.movie("5001") == arrival and catalogue.movie("nope") is None


def test_the_incremental_read_continues_where_the_last_one_ended(catalogue: CatalogueStore) -> None:
    catalogue.add([NewMovie("10", "A", ("Drama",))])
    state = fold({}, catalogue.changes_after(0))
    seen = max(e.last_id for e in state.values())
    catalogue.change(MovieChange("10", genres=("Comedy", "Drama")))
    catalogue.change(MovieChange("10", available=False))
    catalogue.change(MovieChange("10", available=True, year=1999))
    later = catalogue.changes_after(seen)

    assert [c.id for c in later] == sorted(c.id for c in later) and len(later) == 3
    assert fold(state, later)["10"] == catalogue.movie("10")
    assert (state["10"].genres, state["10"].available, state["10"].year) == (("Comedy", "Drama"), True, 1999)
    assert catalogue.changes_after(0, up_to=seen)[-1].id == seen


def test_a_duplicate_add_stores_nothing_and_names_the_duplicates(catalogue: CatalogueStore) -> None:
    catalogue.add([NewMovie("7", "Seven", ("Thriller",))])
    with pytest.raises(DuplicateMovieError) as taken:
        catalogue.add([NewMovie("8", "Eight", ()), NewMovie("7", "Seven again", ())])
    assert taken.value.movie_ids == ["7"]
    with pytest.raises(DuplicateMovieError) as twice:
        catalogue.add([NewMovie("9", "Nine", ()), NewMovie("9", "Nine", ())])
    assert twice.value.movie_ids == ["9"]
    assert {c.movie_id for c in catalogue.changes_after(0)} == {"7"}


def test_concurrent_adds_of_one_movie_store_it_once(catalogue: CatalogueStore, store_url: str) -> None:
    outcomes: list[str] = []

    def add() -> None:
        with CatalogueStore(store_url) as replica:
            try:
                replica.add([NewMovie("42", "Answer", ())])
                outcomes.append("stored")
            except DuplicateMovieError:
                outcomes.append("duplicate")

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate"] * 3 + ["stored"]
    assert len(catalogue.changes_after(0)) == 1


def test_an_unreachable_database_says_what_to_fix() -> None:
    with pytest.raises(CatalogueStoreError, match="check that the URL looks like"):
        CatalogueStore("postgresql+psycopg://nobody@/nowhere?host=/nonexistent-socket-dir")
