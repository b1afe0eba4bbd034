"""The catalogue store: movies added or changed through the API, beside the ratings in the same database.

An append-only log of changes (SQLAlchemy Core over SQLite in WAL mode or PostgreSQL, like the ratings
store). A row either adds a movie (title, genres and year all given) or changes one (only the fields it
names; NULL means unchanged), so two concurrent changes never overwrite each other's fields: the state of
a movie is its rows folded in id order. The autoincrement `id` is the catalogue's clock: replicas read "the
changes after id N" to follow it, and a retraining cut-off means "every change with id <= cut-off".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from contract.database import SqlStore

GENRE_SEPARATOR = "|"  # genres are stored joined, as MovieLens writes them

metadata = sa.MetaData()
changes_table = sa.Table(
    "catalogue_changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("movie_id", sa.String(64), nullable=False),
    sa.Column("added", sa.Boolean, nullable=False),  # true: POST /movies, every field below is given
    sa.Column("title", sa.String(500)),
    sa.Column("genres", sa.String(1000)),  # "Animation|Comedy"; "" for none
    sa.Column("year", sa.Integer),
    sa.Column("available", sa.Boolean),
    sa.Column("changed_at", sa.BigInteger, nullable=False),  # Unix seconds: when the server stored it
    # One add per movie, whichever replica takes it: the database refuses the second, not a racy check.
    sa.Index(
        "ux_catalogue_changes_added",
        "movie_id",
        unique=True,
        sqlite_where=sa.text("added"),
        postgresql_where=sa.text("added"),
    ),
    sa.Index("ix_catalogue_changes_movie_id_id", "movie_id", "id"),
    sqlite_autoincrement=True,
)


class CatalogueStoreError(Exception):
    """The store cannot do its job (bad URL, unreachable database); the message says what to fix."""


class DuplicateMovieError(Exception):
    """Movies already added to the catalogue store; `movie_ids` names them."""

    def __init__(self, movie_ids: Sequence[str]) -> None:
        self.movie_ids = list(movie_ids)
        super().__init__(f"movie_id(s) {self.movie_ids} are already in the catalogue")


@dataclass(frozen=True, slots=True)
class NewMovie:
    movie_id: str
    title: str
    genres: tuple[str, ...]
    year: int | None = None
    available: bool = True


@dataclass(frozen=True, slots=True)
class MovieChange:
    """A change of one movie: None leaves a field as it is."""

    movie_id: str
    title: str | None = None
    genres: tuple[str, ...] | None = None
    year: int | None = None
    available: bool | None = None


@dataclass(frozen=True, slots=True)
class CatalogueChange:
    """One row of the log."""

    id: int
    movie_id: str
    added: bool
    title: str | None
    genres: tuple[str, ...] | None
    year: int | None
    available: bool | None
    changed_at: int


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """What the store says about one movie: for a movie it did not add (one from the MovieLens files), only
    the fields some change set; None means "as the version has it"."""

    movie_id: str
    added: bool  # added through the store, not from a version's data
    title: str | None
    genres: tuple[str, ...] | None
    year: int | None
    available: bool
    first_id: int  # the change that added it (or first changed it): added movies keep this order
    last_id: int  # the newest change folded in


def title_with_year(title: str, year: int | None) -> str:
    """The title text a candidate tower reads: MovieLens titles end in "(year)", so the towers learnt them so."""
    if year is not None and not title.rstrip().endswith(f"({year})"):
        return f"{title} ({year})"
    return title


_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")  # "Toy Story (1995)" -> 1995
YearOutside = Literal["keep", "clamp", "drop"]


def title_year(title: str) -> int | None:
    """The year a title ends with in parentheses, None when it names none."""
    found = _TITLE_YEAR.search(title)
    return int(found.group(1)) if found else None


def title_year_within(title: str, first: int, last: int, outside: YearOutside) -> str:
    """`title` as a tower whose titles name the years `first` to `last` should read it: a year outside them
    kept as it is, moved to the nearest one it knows ("Scream 4 (2011)" reads "Scream 4 (1998)"), or dropped.

    Why: a year the training titles never named is a word the tower never saw, read like the rare years of
    the oldest films (docs/results.md, "A year after the data").
    """
    found = _TITLE_YEAR.search(title)
    if outside == "keep" or found is None or first <= int(found.group(1)) <= last:
        return title
    if outside == "drop":
        return title[: found.start()].rstrip()
    return f"{title[: found.start()]}({min(max(int(found.group(1)), first), last)})"


def fold(entries: dict[str, CatalogueEntry], changes: Iterable[CatalogueChange]) -> dict[str, CatalogueEntry]:
    """`entries` (changed in place and returned) with `changes` applied in order: the catalogue's state."""
    for change in changes:
        before = entries.get(change.movie_id)
        if change.added or before is None:
            before = CatalogueEntry(change.movie_id, change.added, None, None, None, True, change.id, change.id)
        entries[change.movie_id] = replace(
            before,
            title=change.title if change.title is not None else before.title,
            genres=change.genres if change.genres is not None else before.genres,
            year=change.year if change.year is not None else before.year,
            available=change.available if change.available is not None else before.available,
            last_id=change.id,
        )
    return entries


class CatalogueStore(SqlStore):
    """Appends catalogue changes and reads them back; safe to share between threads and between processes."""

    what = "catalogue"
    error = CatalogueStoreError
    # As for ratings: without it a change with a smaller id could commit after a replica or a retrain read past
    # it, and be skipped forever.
    write_lock = 0x4341_5447  # PostgreSQL advisory lock key ("CATG") that serializes writers
    passthrough = (IntegrityError,)  # a duplicate add: `add` answers it with DuplicateMovieError

    def create_schema(self) -> None:
        """Creates the table and its indexes unless present; several replicas may call this at once."""
        self._create_tables([changes_table], "create the catalogue table")

    def add(self, movies: Sequence[NewMovie]) -> list[int]:
        """Adds all movies in one transaction; their change ids (input order) only once committed.

        Raises:
            DuplicateMovieError: some movie_id was added before (or twice in `movies`); nothing is stored.
        """
        if not movies:
            return []
        rows = [
            {
                "movie_id": m.movie_id,
                "added": True,
                "title": m.title,
                "genres": GENRE_SEPARATOR.join(m.genres),
                "year": m.year,
                "available": m.available,
            }
            for m in movies
        ]
        try:
            return self._insert(rows, "add movies")
        except IntegrityError:
            pass  # outside the failed transaction: which of them are taken is read below
        taken = set(self.added_ids([m.movie_id for m in movies]))
        ids = [m.movie_id for m in movies]
        duplicates = sorted(taken | {i for i in ids if ids.count(i) > 1})
        raise DuplicateMovieError(duplicates or ids)

    def change(self, change: MovieChange) -> int:
        """Stores one change; its id once committed."""
        row = {
            "movie_id": change.movie_id,
            "added": False,
            "title": change.title,
            "genres": None if change.genres is None else GENRE_SEPARATOR.join(change.genres),
            "year": change.year,
            "available": change.available,
        }
        return self._insert([row], "change a movie")[0]

    def changes_after(self, after_id: int, up_to: int | None = None) -> list[CatalogueChange]:
        """The changes with after_id < id (<= up_to), oldest first: what a replica has not folded in yet."""
        t = changes_table
        query = sa.select(t).where(t.c.id > after_id)
        if up_to is not None:
            query = query.where(t.c.id <= up_to)
        return [_change(row) for row in self._read(query.order_by(t.c.id), "read catalogue changes")]

    def movie(self, movie_id: str) -> CatalogueEntry | None:
        """One movie's state from its own changes (None: the store has none), read fresh from the database."""
        t = changes_table
        query = sa.select(t).where(t.c.movie_id == movie_id).order_by(t.c.id)
        rows = [_change(row) for row in self._read(query, "read a movie")]
        return fold({}, rows).get(movie_id)

    def added_ids(self, movie_ids: Sequence[str]) -> list[str]:
        """Those of `movie_ids` the store added."""
        t = changes_table
        query = sa.select(t.c.movie_id).where(t.c.added, t.c.movie_id.in_(list(movie_ids)))
        return [row.movie_id for row in self._read(query, "read movies")]

    def last_id(self) -> int:
        """The newest committed change id, 0 when empty: the cut-off a retraining run records."""
        query = sa.select(sa.func.coalesce(sa.func.max(changes_table.c.id), 0))
        return int(self._read(query, "read the last change id")[0][0])

    def _insert(self, rows: list[dict[str, Any]], doing: str) -> list[int]:
        changed_at = int(time.time())
        statement = sa.insert(changes_table).returning(changes_table.c.id, sort_by_parameter_order=True)
        with self._errors(doing), self._engine.begin() as conn:
            self._serialize_writers(conn)
            ids = list(conn.execute(statement, [{**row, "changed_at": changed_at} for row in rows]).scalars())
        return ids  # the `with` has committed: the caller may acknowledge

    def _read(self, query: sa.Select[Any], doing: str) -> Sequence[sa.Row[Any]]:
        with self._errors(doing), self._engine.connect() as conn:
            return conn.execute(query).all()


def _change(row: sa.Row[Any]) -> CatalogueChange:
    genres = row.genres
    return CatalogueChange(
        id=int(row.id),
        movie_id=row.movie_id,
        added=bool(row.added),
        title=row.title,
        genres=None if genres is None else tuple(g for g in genres.split(GENRE_SEPARATOR) if g),
        year=row.year,
        available=None if row.available is None else bool(row.available),
        changed_at=int(row.changed_at),
    )
