"""What the ratings and catalogue stores share: opening the database, its SQLite tuning, creating tables, the
writers' lock and the error messages.

Both stores (and the impressions tables, on the ratings store's engine) live in one database, SQLite in WAL mode
on one host or PostgreSQL for a fleet, through SQLAlchemy Core; each store adds its own tables and queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

BUSY_TIMEOUT_MS = 5000  # how long a SQLite writer waits for another process's write lock before failing
URL_EXAMPLES = "sqlite:///path/to/ratings.db or postgresql+psycopg://user@host:5432/db"


class SQLiteModeError(SQLAlchemyError):
    """SQLite would not run the database in WAL mode: a store's error names the file, as for a driver failure."""


class SqlStore:
    """A store's engine on the database at a URL, with what every store does the same way.

    Subclasses set `what` (the store's name in messages), `error` (what a driver failure becomes),
    `write_lock` (their PostgreSQL advisory lock key), `create_schema` and, when they answer some driver failure
    themselves, `passthrough`.
    """

    what: ClassVar[str]
    error: ClassVar[type[Exception]]
    write_lock: ClassVar[int]
    passthrough: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, url: str) -> None:
        """Opens the engine and connects once, so that a wrong URL fails at startup rather than on the first
        request."""
        self._url: sa.URL | None = None
        with self._errors(f"open the {self.what} database"):
            self._url = sa.make_url(url)
            if self._url.get_backend_name() == "sqlite" and self._url.database not in (None, "", ":memory:"):
                Path(self._url.database).parent.mkdir(parents=True, exist_ok=True)
            # hide_parameters: a failed statement's message would otherwise carry users' ratings.
            self._engine = sa.create_engine(self._url, pool_pre_ping=True, hide_parameters=True)
            if self._url.get_backend_name() == "sqlite":
                sa.event.listen(self._engine, "connect", _tune_sqlite)
            with self._engine.connect():
                pass

    @classmethod
    def with_schema(cls, url: str) -> Self:
        """The store at `url` with its tables created unless present; closed again if they cannot be."""
        store = cls(url)
        try:
            store.create_schema()
        except BaseException:
            store.close()
            raise
        return store

    def create_schema(self) -> None:
        """Creates the store's tables and indexes unless present; several replicas may call this at once."""
        raise NotImplementedError

    @property
    def engine(self) -> sa.Engine:
        """The store's engine, for the tables that live beside it (contract/impressions.py)."""
        return self._engine

    def close(self) -> None:
        """Closes the pooled connections; call on shutdown so PostgreSQL sees the sessions end."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _create_tables(self, tables: Sequence[sa.Table], doing: str) -> None:
        """Creates the tables and their indexes unless present; several replicas may call this at once."""
        with self._errors(doing), self._engine.begin() as conn:
            self._serialize_writers(conn)
            create_tables(conn, tables)

    def _serialize_writers(self, conn: sa.Connection) -> None:
        """Makes this transaction's writes commit one at a time, in the order their ids were handed out.

        SQLite writers already queue on its one write lock. PostgreSQL hands out sequence values before commit,
        so without this a row with a smaller id could commit after a cutoff was read (a retrain's, a replica's
        poll), and be skipped forever.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self.write_lock)))

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        """Turns driver failures into the store's error, without the password or the rows being written."""
        return driver_errors(lambda: self._url, doing, self.error, self.passthrough)


def create_tables(conn: sa.Connection, tables: Sequence[sa.Table]) -> None:
    """CREATE ... IF NOT EXISTS for each table and its indexes, in the caller's transaction: create_all's
    check-then-create races between processes on SQLite."""
    for table in tables:
        conn.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))


@contextmanager
def driver_errors(
    url: Callable[[], sa.URL | None],
    doing: str,
    error: type[Exception],
    passthrough: tuple[type[Exception], ...] = (),
) -> Iterator[None]:
    """Turns a store's driver failures into `error`, naming what failed and where without the password, and
    what to check; `url` is read when one fails (opening sets it inside the block). `passthrough` exceptions
    (a unique-index violation the caller answers) pass unchanged."""
    try:
        yield
    except passthrough:
        raise
    except (SQLAlchemyError, OSError, ImportError) as exc:
        message = str(getattr(exc, "orig", None) or exc).strip()
        reason = message.splitlines()[0] if message else "no detail"
        where, known = "the given URL", url()
        if known is not None:
            where = known.render_as_string(hide_password=True)
            if known.password:
                reason = reason.replace(str(known.password), "***")
        raise error(
            f"cannot {doing} at {where} ({type(exc).__name__}: {reason}); check that the URL looks like "
            f"{URL_EXAMPLES}, that the server is running and reachable, and that the user may connect"
        ) from None  # the chained driver exception could carry credentials into logs


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: WAL lets readers run beside a writer, FULL makes an acknowledged write survive power loss."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # first: switching to WAL may wait for a lock
        (mode,) = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode.lower() != "wal":
            raise SQLiteModeError(
                f"SQLite refused WAL mode (got {mode!r}); put the database in a file on a local filesystem"
            )
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()
