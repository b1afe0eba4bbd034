"""What the stores share (contract/database.py): each one's own error, naming the store and what to fix."""

from __future__ import annotations

import pytest

from contract.catalogue import CatalogueStore, CatalogueStoreError
from contract.database import SqlStore
from contract.ratings import RatingsStore, RatingsStoreError


@pytest.mark.parametrize(
    ("store", "error", "name"),
    [(RatingsStore, RatingsStoreError, "ratings"), (CatalogueStore, CatalogueStoreError, "catalogue")],
)
def test_a_sqlite_database_without_wal_is_refused_with_the_stores_own_error(
    store: type[SqlStore], error: type[Exception], name: str
) -> None:
    # An in-memory database cannot run in WAL mode: replicas could not share it, so the store refuses it.
    with pytest.raises(error, match=rf"cannot open the {name} database .*refused WAL mode.*local filesystem"):
        store("sqlite://")
