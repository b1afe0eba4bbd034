"""The ratings store: ratings the service takes over HTTP, kept durably for the retraining job to read.

SQLAlchemy Core over SQLite in WAL mode (several API processes on one host) or PostgreSQL (a bigger deployment).
The autoincrement `id` is the store's clock: a retraining cutoff means "every stored rating with id <= cutoff",
so ids are handed out in commit order on both backends (`SqlStore._serialize_writers`, contract/database.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from contract.database import SqlStore

FETCH_CHUNK = 50_000  # rows per round trip when retraining streams millions of ratings

metadata = sa.MetaData()
ratings_table = sa.Table(
    "ratings",
    metadata,
    # A rowid alias on SQLite; AUTOINCREMENT so an id is never reused, even after the newest rows are deleted.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("movie_id", sa.String(64), nullable=False),
    sa.Column("rating", sa.Float, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),  # Unix seconds: when the user rated
    sa.Column("received_at", sa.BigInteger, nullable=False),  # Unix seconds: when the server stored it
    sa.Index("ix_ratings_user_id_timestamp", "user_id", "timestamp"),
    # The per-request read (`since`): one user's ratings after a cutoff id, a range scan however many they have.
    sa.Index("ix_ratings_user_id_id", "user_id", "id"),
    sqlite_autoincrement=True,
)


class RatingsStoreError(Exception):
    """The store cannot do its job (bad URL, unreachable database); the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    movie_id: str
    rating: float
    timestamp: int  # Unix seconds: when the user rated


@dataclass(frozen=True, slots=True)
class StoredRating(Rating):
    id: int  # monotonic in commit order: what a retraining cutoff refers to
    received_at: int  # Unix seconds: when the server stored it


@dataclass(frozen=True)
class RatingColumns:
    """Ratings as columns ordered by id: retraining reads millions, which Python objects would not hold well."""

    id: npt.NDArray[np.int64]
    user_id: npt.NDArray[np.object_]  # Python str
    movie_id: npt.NDArray[np.object_]  # Python str
    rating: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.id)


class RatingsStore(SqlStore):
    """Appends ratings and reads them back; safe to share between threads and between processes."""

    what = "ratings"
    error = RatingsStoreError
    write_lock = 0x5241_5447  # PostgreSQL advisory lock key ("RATG") that serializes writers

    def __init__(self, url: str) -> None:
        self._readers = threading.local()  # each thread's kept read connection (see _fetch)
        self._readers_lock = threading.Lock()
        self._open_readers: list[sa.Connection] = []
        self._since: _DriverStatement | None = None  # compiled on first use, for this engine's dialect
        super().__init__(url)

    @property
    def url(self) -> str:
        """The database's URL, password included: the catalogue store beside the ratings opens the same one."""
        assert self._url is not None
        return self._url.render_as_string(hide_password=False)

    def create_schema(self) -> None:
        """Creates the table and its indexes unless present; several replicas may call this at once."""
        self._create_tables([ratings_table], "create the ratings table")

    def add(self, ratings: Sequence[Rating]) -> list[int]:
        """Stores all ratings in one transaction; returns their ids (in input order) only once committed."""
        if not ratings:
            return []
        received_at = int(time.time())
        rows = [{**asdict(r), "received_at": received_at} for r in ratings]
        statement = sa.insert(ratings_table).returning(ratings_table.c.id, sort_by_parameter_order=True)
        with self._errors("store ratings"), self._engine.begin() as conn:
            self._serialize_writers(conn)
            ids = list(conn.execute(statement, rows).scalars())
        return ids  # the `with` has committed: the caller may acknowledge

    def history(
        self, user_id: str, before: int | None = None, limit: int | None = None, after_id: int = 0
    ) -> list[StoredRating]:
        """The user's ratings oldest first, only those rated before `before`, and only the newest `limit`.

        `after_id` skips the ratings a model version already trained on (its cutoff).
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        t = ratings_table
        query = _before(sa.select(t).where(t.c.user_id == user_id, t.c.id > after_id), before)
        query = query.order_by(t.c.timestamp.desc(), t.c.id.desc()).limit(limit)
        return [_stored(row) for row in reversed(self._fetch(query, "read a user's ratings"))]

    def since(self, user_id: str, after_id: int) -> list[StoredRating]:
        """The user's ratings stored after `after_id`, oldest first: the server's read on every request.

        So it skips SQLAlchemy's execution layer: the statement is compiled once for the dialect and run on
        the kept connection's driver cursor (through SQLAlchemy this read was a fifth of a request's CPU:
        docs/serving-speed.md).
        """
        if self._since is None:
            self._since = _DriverStatement(_SINCE, self._engine.dialect)
        rows = self._fetch_driver(self._since, {"user_id": user_id, "after_id": after_id}, "read a user's ratings")
        return [
            StoredRating(id=i, user_id=u, movie_id=m, rating=r, timestamp=t, received_at=a) for i, u, m, r, t, a in rows
        ]

    def histories(
        self, user_ids: Sequence[str], before: int | None = None, after_id: int = 0
    ) -> dict[str, list[StoredRating]]:
        """`history` for many users in one query (the server batches requests); unknown users get []."""
        result: dict[str, list[StoredRating]] = {user_id: [] for user_id in user_ids}
        if not result:
            return result
        t = ratings_table
        where = sa.select(t).where(t.c.user_id.in_(list(result)), t.c.id > after_id)
        query = _before(where, before).order_by(t.c.timestamp, t.c.id)
        for row in self._fetch(query, "read users' ratings"):
            result[row.user_id].append(_stored(row))
        return result

    def last_id(self) -> int:
        """The newest committed id, 0 when empty: the cutoff a retraining run records."""
        query = sa.select(sa.func.coalesce(sa.func.max(ratings_table.c.id), 0))
        return int(self._fetch(query, "read the last id")[0][0])

    def count(self) -> int:
        return int(self._fetch(sa.select(sa.func.count()).select_from(ratings_table), "count ratings")[0][0])

    def count_after(self, after_id: int) -> int:
        """Ratings stored after `after_id`: the window a retrain can judge models on."""
        query = sa.select(sa.func.count()).select_from(ratings_table).where(ratings_table.c.id > after_id)
        return int(self._fetch(query, "count ratings")[0][0])

    def ratings_up_to(self, cutoff_id: int, after_id: int = 0) -> RatingColumns:
        """Every rating with after_id < id <= cutoff_id, ordered by id, streamed in chunks into columns."""
        t = ratings_table
        query = (
            sa.select(t.c.id, t.c.user_id, t.c.movie_id, t.c.rating, t.c.timestamp)
            .where(t.c.id > after_id, t.c.id <= cutoff_id)
            .order_by(t.c.id)
        )
        with self._errors("read ratings for retraining"), self._engine.connect() as conn:
            # yield_per: a server-side cursor on PostgreSQL, chunked fetches on SQLite; never one giant list.
            result = conn.execution_options(yield_per=FETCH_CHUNK).execute(query)
            chunks = [_columns(part) for part in result.partitions()]
        if not chunks:
            return _columns([])
        return RatingColumns(
            **{f.name: np.concatenate([getattr(c, f.name) for c in chunks]) for f in fields(chunks[0])}
        )

    def close(self) -> None:
        """Closes the readers' and the pooled connections; call on shutdown so PostgreSQL sees the sessions end."""
        with self._readers_lock:
            readers, self._open_readers = self._open_readers, []
        for conn in readers:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()
        super().close()

    def _reader(self) -> sa.Connection:
        """This thread's read connection, kept open between reads (opened on first use or after a failure).

        The server reads a user's new ratings on every request: a pool checkout with its pre-ping cost several
        times the read itself on a kept connection (docs/serving-speed.md).
        """
        conn: sa.Connection | None = getattr(self._readers, "connection", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._engine.connect()
            self._readers.connection = conn
            with self._readers_lock:
                self._open_readers.append(conn)
        return conn

    def _fetch(
        self, query: sa.Select[Any], doing: str, parameters: dict[str, Any] | None = None
    ) -> Sequence[sa.Row[Any]]:
        """One read on this thread's kept connection. Each read's transaction ends at once, so the next read
        sees every commit since (a SQLite WAL reader would otherwise keep its old snapshot)."""
        with self._errors(doing):
            conn = self._reader()
            try:
                return conn.execute(query, parameters).all()
            except SQLAlchemyError:
                conn.invalidate()  # a broken connection is replaced on the next read, not reused
                raise
            finally:
                if not conn.invalidated:
                    conn.rollback()

    def _fetch_driver(self, statement: _DriverStatement, parameters: dict[str, Any], doing: str) -> list[Any]:
        """`_fetch` on the driver's own cursor, for the per-request read; same connection, same transaction end."""
        driver_error = self._engine.dialect.loaded_dbapi.Error
        with self._errors(doing):
            conn = self._reader()
            try:
                driver = conn.connection.dbapi_connection
                assert driver is not None
                cursor = driver.cursor()
                try:
                    cursor.execute(statement.sql, statement.parameters(parameters))
                    return list(cursor.fetchall())
                finally:
                    cursor.close()
                    driver.rollback()
            except driver_error as error:
                conn.invalidate()
                raise sa.exc.DBAPIError(statement.sql, None, error) from error


_SINCE = (
    sa.select(ratings_table)
    .where(ratings_table.c.user_id == sa.bindparam("user_id"), ratings_table.c.id > sa.bindparam("after_id"))
    .order_by(ratings_table.c.timestamp, ratings_table.c.id)
)


class _DriverStatement:
    """A statement compiled once for a dialect: its SQL and how to order its parameters for the driver."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._positions = compiled.positiontup if compiled.positional else None

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        return tuple(values[name] for name in self._positions) if self._positions is not None else values


def _before(query: sa.Select[Any], before: int | None) -> sa.Select[Any]:
    return query if before is None else query.where(ratings_table.c.timestamp < before)


def _stored(row: sa.Row[Any]) -> StoredRating:
    return StoredRating(**row._mapping)


def _columns(rows: Sequence[Sequence[Any]]) -> RatingColumns:
    ids, user_ids, movie_ids, ratings, timestamps = zip(*rows, strict=True) if rows else ((),) * 5
    return RatingColumns(
        id=np.array(ids, dtype=np.int64),
        user_id=np.array(user_ids, dtype=object),
        movie_id=np.array(movie_ids, dtype=object),
        rating=np.array(ratings, dtype=np.float32),
        timestamp=np.array(timestamps, dtype=np.int64),
    )


@contextmanager
def opened_store(url: str | None) -> Iterator[RatingsStore | None]:
    """The store at `url`, its schema created, closed on exit; None without a URL. A job opens it once."""
    if url is None:
        yield None
        return
    with RatingsStore.with_schema(url) as store:
        yield store
