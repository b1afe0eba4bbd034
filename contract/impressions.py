"""The impressions store: what each /recommend answer showed, the ratings credited to it, and per-version tallies.

It lives in the ratings database (SQLAlchemy Core on the ratings store's engine), so every replica and the
retrainer read the same figures. Online metrics are tallies kept up to date as impressions are written and as
ratings are credited (`credit`), never computed by scanning impressions: reading them (`online_stats`) reads
one row per version, one per (version, rank) and the distinct movies shown. Crediting a rating reads only
its user's impressions in the window (an index on user and moment).

Crediting: a stored rating (u, m, t) is credited to the newest impression that showed m to u at a moment in
[t - window, t]. Ratings are credited in id order from a watermark, each once, by whichever replica gets the
watermark row first; a rating is credited only once `settle_seconds` old, so the impression written behind
the request that preceded it has landed.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from contract.database import create_tables, driver_errors
from contract.ratings import RatingsStore, RatingsStoreError, ratings_table

LIKED_MIN_RATING = 4.0  # a "liked" rating, as offline (results.md's liked rows): 4 stars or more
CREDIT_CHUNK = 2000  # ratings credited per transaction: short write locks beside POST /ratings
# Impression rows per INSERT statement: 9,000 parameters, under SQLite's 32,766 (3.32 and later) and
# PostgreSQL's 65,535. Fewer, longer statements cost the writer less per row (docs/serving-speed.md).
INSERT_CHUNK = 1000
MAX_LOOKED_AT = 1000  # a user's newest impressions in a window searched for the rated movie, at most

metadata = sa.MetaData()
_id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
impressions_table = sa.Table(
    "impressions",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("recommendation_id", sa.String(32), nullable=False, unique=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("shown_at", sa.BigInteger, nullable=False),  # Unix seconds: the answer's moment (now, or asked)
    sa.Column("recorded_at", sa.BigInteger, nullable=False),  # Unix seconds, server clock: what retention reads
    sa.Column("personalised", sa.Boolean, nullable=False),
    # The ranked movie ids, a JSON array: one row per answer keeps the writer cheap (a row per movie cost the
    # server a third of its throughput), and crediting reads only one user's few impressions in a window.
    sa.Column("movie_ids", sa.Text, nullable=False),
    sa.Column("rated", sa.Boolean, nullable=False, default=False),  # a rating of a shown movie was credited
    sa.Column("liked", sa.Boolean, nullable=False, default=False),  # ... one of at least LIKED_MIN_RATING
    sa.Index("ix_impressions_recorded_at", "recorded_at"),
    # The crediting lookup: this user's impressions in a window, newest first: one range scan.
    sa.Index("ix_impressions_user_shown", "user_id", "shown_at"),
    sqlite_autoincrement=True,
)
stats_table = sa.Table(
    "online_stats",
    metadata,
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("impressions", sa.BigInteger, nullable=False),
    sa.Column("personalised", sa.BigInteger, nullable=False),
    sa.Column("rated", sa.BigInteger, nullable=False),  # impressions followed by a rating of a shown movie
    sa.Column("liked", sa.BigInteger, nullable=False),  # ... by a liked one
    sa.Column("credited", sa.BigInteger, nullable=False),  # ratings credited to the version's impressions
    sa.Column("credited_liked", sa.BigInteger, nullable=False),
)
rank_hits_table = sa.Table(
    "online_rank_hits",
    metadata,
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("hits", sa.BigInteger, nullable=False),
    sa.Column("liked_hits", sa.BigInteger, nullable=False),
)
coverage_table = sa.Table(
    "online_coverage",  # one row per (version, movie shown): bounded by versions x catalogue
    metadata,
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("movie_id", sa.String(64), primary_key=True),
)
progress_table = sa.Table(
    "online_progress",  # one row: the newest rating id credited (or skipped)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_rating_id", sa.BigInteger, nullable=False),
)
_INSERT_COLUMNS = (
    "recommendation_id", "user_id", "version", "shown_at", "recorded_at", "personalised", "movie_ids", "rated", "liked"
)  # fmt: skip
_COUNTS = ("impressions", "personalised", "rated", "liked", "credited", "credited_liked")


class ImpressionStoreError(RatingsStoreError):
    """The impressions tables cannot be read or written; the message says what failed."""


@dataclass(frozen=True, slots=True)
class Impression:
    """One answer as shown: who, which version, when, and the movies in rank order."""

    recommendation_id: str
    user_id: str
    version: str
    shown_at: int  # Unix seconds: the answer's moment
    movie_ids: tuple[str, ...]
    personalised: bool


@dataclass(frozen=True, slots=True)
class Credit:
    """A stored rating credited to an impression that showed its movie."""

    rating_id: int
    recommendation_id: str
    version: str
    rank: int
    liked: bool


@dataclass(frozen=True)
class OnlineStats:
    """One version's online tallies, as every replica reads them."""

    version: str
    impressions: int
    personalised: int
    rated: int
    liked: int
    credited: int
    credited_liked: int
    coverage: int  # distinct movies shown
    hits_by_rank: dict[int, int] = field(default_factory=dict)
    liked_hits_by_rank: dict[int, int] = field(default_factory=dict)

    @property
    def rated_share(self) -> float:
        """Share of impressions followed (within the window) by a rating of a movie they showed."""
        return self.rated / self.impressions if self.impressions else 0.0

    @property
    def liked_share(self) -> float:
        """The same, counting only liked ratings (>= LIKED_MIN_RATING): what the canary rule compares."""
        return self.liked / self.impressions if self.impressions else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "impressions": self.impressions,
            "personalised": self.personalised,
            "rated": self.rated,
            "liked": self.liked,
            "rated_share": self.rated_share,
            "liked_share": self.liked_share,
            "credited_ratings": self.credited,
            "credited_liked_ratings": self.credited_liked,
            "coverage": self.coverage,
            "hits_by_rank": {str(rank): hits for rank, hits in sorted(self.hits_by_rank.items())},
            "liked_hits_by_rank": {str(rank): hits for rank, hits in sorted(self.liked_hits_by_rank.items())},
        }


class ImpressionStore:
    """Writes impressions, credits ratings to them and reads the tallies; on the ratings store's engine."""

    def __init__(self, ratings: RatingsStore) -> None:
        self._engine = ratings.engine
        self._covered: dict[str, set[str]] = {}  # version -> movies known to be in online_coverage
        self._insert_statements: dict[int, str] = {}  # rows -> its multi-row INSERT (see _insert_rows)

    def create_schema(self) -> None:
        """Creates the tables and indexes unless present; several replicas may call this at once."""
        with self._errors("create the impressions tables"), self._engine.begin() as conn:
            create_tables(conn, metadata.sorted_tables)
            insert = _insert(conn, progress_table).on_conflict_do_nothing(index_elements=["id"])
            conn.execute(insert, {"id": 1, "last_rating_id": 0})

    def add(self, impressions: Sequence[Impression], recorded_at: int | None = None) -> None:
        """Stores the impressions and adds them to their versions' tallies, in one transaction."""
        if not impressions:
            return
        recorded_at = int(time.time()) if recorded_at is None else recorded_at
        rows = [
            (i.recommendation_id, i.user_id, i.version, i.shown_at, recorded_at, i.personalised,
             _json_ids(i.movie_ids), False, False)
            for i in impressions
        ]  # fmt: skip
        # Only the pairs this process has not stored yet: after a while, nearly none (one subset test each).
        shown = sorted(
            {
                (i.version, m)
                for i in impressions
                if not self._covered.get(i.version, set()).issuperset(i.movie_ids)
                for m in i.movie_ids
                if m not in self._covered.get(i.version, ())
            }
        )
        per_version = Counter(i.version for i in impressions)
        personalised = Counter(i.version for i in impressions if i.personalised)
        counts = [{"version": v, "impressions": n, "personalised": personalised[v]} for v, n in per_version.items()]
        with self._errors("store impressions"), self._engine.begin() as conn:
            self._insert_rows(conn, rows)
            if shown:
                insert = _insert(conn, coverage_table).on_conflict_do_nothing(index_elements=["version", "movie_id"])
                conn.execute(insert, [{"version": v, "movie_id": m} for v, m in shown])
            _add_counts(conn, counts)
        for version, movie_id in shown:  # committed: only now are they known stored
            self._covered.setdefault(version, set()).add(movie_id)

    def _insert_rows(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Inserts the rows (tuples in _INSERT_COLUMNS order), INSERT_CHUNK to a statement.

        One multi-row INSERT per chunk, straight to the driver, rather than executemany: sqlite3 gives up and
        retakes the GIL around every row it steps, and each retake beside the busy event loop cost the server a
        thread switch (with impressions on it lost a sixth of its throughput at concurrency 8); one statement
        is one step. SQLAlchemy's per-row parameter processing is skipped too.
        """
        for lo in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[lo : lo + INSERT_CHUNK]
            flat = tuple(itertools.chain.from_iterable(chunk))
            conn.exec_driver_sql(self._insert_sql(conn.dialect, len(chunk)), flat)

    def _insert_sql(self, dialect: sa.Dialect, count: int) -> str:
        """The INSERT of `count` rows with positional parameters in this engine's driver's style (cached)."""
        sql = self._insert_statements.get(count)
        if sql is None:
            # sqlite3 binds "?"; psycopg takes "%s" beside its default named style. Another style is refused
            # rather than mis-bound.
            marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
            if marker is None:
                raise ImpressionStoreError(f"the {dialect.name} driver's parameter style {dialect.paramstyle!r}")
            row = "(" + ", ".join([marker] * len(_INSERT_COLUMNS)) + ")"
            columns = ", ".join(_INSERT_COLUMNS)
            sql = f"INSERT INTO {impressions_table.name} ({columns}) VALUES {', '.join([row] * count)}"
            self._insert_statements[count] = sql
        return sql

    def impression(self, recommendation_id: str) -> Impression | None:
        """One stored impression with its movies in rank order, or None (never recorded, or pruned)."""
        t = impressions_table
        with self._errors("read an impression"), self._engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.recommendation_id == recommendation_id)).first()
        if row is None:
            return None
        movies = tuple(json.loads(row.movie_ids))
        return Impression(row.recommendation_id, row.user_id, row.version, row.shown_at, movies, row.personalised)

    def count(self) -> int:
        with self._errors("count impressions"), self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(impressions_table)).scalar_one())

    def credit(self, window_seconds: int, settle_seconds: float = 0.0, now: float | None = None) -> list[Credit]:
        """Credits every stored rating not yet credited that is at least `settle_seconds` old; returns the credits.

        Each rating goes to the newest impression that showed its movie to its user at a moment in
        [timestamp - window_seconds, timestamp] (ties: the later recorded), or to none. Safe to run from many
        replicas at once: the watermark row is locked first, so each rating is credited exactly once.
        """
        settled = (time.time() if now is None else now) - settle_seconds
        credits: list[Credit] = []
        while True:
            with self._errors("credit ratings to impressions"), self._engine.begin() as conn:
                batch, done = self._credit_chunk(conn, window_seconds, settled)
            credits += batch
            if done:
                return credits

    def _credit_chunk(self, conn: sa.Connection, window: int, settled: float) -> tuple[list[Credit], bool]:
        p, r = progress_table, ratings_table
        # A write first: on SQLite it takes the write lock, on PostgreSQL the row's lock, until commit.
        conn.execute(sa.update(p).where(p.c.id == 1).values(last_rating_id=p.c.last_rating_id))
        last = int(conn.execute(sa.select(p.c.last_rating_id).where(p.c.id == 1)).scalar_one())
        rows = conn.execute(
            sa.select(r.c.id, r.c.user_id, r.c.movie_id, r.c.rating, r.c.timestamp, r.c.received_at)
            .where(r.c.id > last)
            .order_by(r.c.id)
            .limit(CREDIT_CHUNK)
        ).all()
        credits = []
        for row in rows:
            if row.received_at > settled:  # too fresh: its impression may still be in a replica's queue
                break
            credit = _credit_one(conn, row, window)
            if credit is not None:
                credits.append(credit)
            last = row.id
        conn.execute(sa.update(p).where(p.c.id == 1).values(last_rating_id=last))
        return credits, len(rows) < CREDIT_CHUNK or (bool(rows) and last != rows[-1].id)

    def online_stats(self) -> dict[str, OnlineStats]:
        """Every version's tallies: a read of the small tally tables, never of the impressions."""
        c = coverage_table
        with self._errors("read online metrics"), self._engine.connect() as conn:
            stats = conn.execute(sa.select(stats_table)).all()
            hits = conn.execute(sa.select(rank_hits_table)).all()
            coverage: dict[str, int] = dict(
                conn.execute(sa.select(c.c.version, sa.func.count()).group_by(c.c.version)).tuples().all()
            )
        by_rank: dict[str, dict[int, int]] = {}
        liked_by_rank: dict[str, dict[int, int]] = {}
        for row in hits:
            by_rank.setdefault(row.version, {})[row.rank] = row.hits
            liked_by_rank.setdefault(row.version, {})[row.rank] = row.liked_hits
        return {
            row.version: OnlineStats(
                **{name: int(getattr(row, name)) for name in _COUNTS},
                version=row.version,
                coverage=int(coverage.get(row.version, 0)),
                hits_by_rank=by_rank.get(row.version, {}),
                liked_hits_by_rank=liked_by_rank.get(row.version, {}),
            )
            for row in stats
        }

    def prune(self, older_than: int) -> int:
        """Deletes impressions recorded before `older_than` (Unix seconds); the tallies stay.

        Returns:
            how many impressions were deleted.
        """
        t = impressions_table
        with self._errors("prune impressions"), self._engine.begin() as conn:
            return int(conn.execute(sa.delete(t).where(t.c.recorded_at < older_than)).rowcount)

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return driver_errors(lambda: self._engine.url, doing, ImpressionStoreError)


def _credit_one(conn: sa.Connection, rating: Any, window: int) -> Credit | None:
    """Credit one rating to the newest impression that showed its movie in the window, updating the tallies."""
    t = impressions_table
    candidates = conn.execute(
        sa.select(t.c.id, t.c.version, t.c.recommendation_id, t.c.movie_ids)
        .where(
            t.c.user_id == rating.user_id,
            t.c.shown_at <= rating.timestamp,
            t.c.shown_at >= rating.timestamp - window,
        )
        .order_by(t.c.shown_at.desc(), t.c.id.desc())
        .limit(MAX_LOOKED_AT)
    ).all()
    shown = next(
        (
            _Shown(c.id, c.version, c.recommendation_id, rank)
            for c in candidates
            if (rank := _rank_of(c.movie_ids, rating.movie_id))
        ),
        None,
    )
    if shown is None:
        return None
    liked = rating.rating >= LIKED_MIN_RATING
    first_rated = conn.execute(
        sa.update(t).where(t.c.id == shown.impression_id, t.c.rated.is_(False)).values(rated=True)
    ).rowcount
    first_liked = 0
    if liked:
        first_liked = conn.execute(
            sa.update(t).where(t.c.id == shown.impression_id, t.c.liked.is_(False)).values(liked=True)
        ).rowcount
    _add_counts(
        conn,
        [
            {
                "version": shown.version,
                "rated": first_rated,
                "liked": first_liked,
                "credited": 1,
                "credited_liked": int(liked),
            }
        ],
    )
    h = rank_hits_table
    upsert = _insert(conn, h)
    upsert = upsert.on_conflict_do_update(
        index_elements=["version", "rank"],
        set_={"hits": h.c.hits + upsert.excluded.hits, "liked_hits": h.c.liked_hits + upsert.excluded.liked_hits},
    )
    conn.execute(upsert, {"version": shown.version, "rank": shown.rank, "hits": 1, "liked_hits": int(liked)})
    return Credit(rating.id, shown.recommendation_id, shown.version, shown.rank, liked)


class _Shown(NamedTuple):
    """The impression a rating is credited to, and the rank its movie had there."""

    impression_id: int
    version: str
    recommendation_id: str
    rank: int


def _json_ids(movie_ids: tuple[str, ...]) -> str:
    """The ids as a JSON array of strings; digits need no escaping, so the common case skips json.dumps (a
    quarter of the writer's CPU per answer)."""
    if "".join(movie_ids).isdigit():
        return '["' + '", "'.join(movie_ids) + '"]'
    return json.dumps(movie_ids)


def _rank_of(movie_ids: str, movie_id: str) -> int:
    """1-based rank of `movie_id` in an impression's JSON list, 0 when it was not shown."""
    movies = json.loads(movie_ids)
    return movies.index(movie_id) + 1 if movie_id in movies else 0


def _add_counts(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Adds each row's counts to its version's tallies (an upsert: the first impression creates the row)."""
    s = stats_table
    full = [{name: row.get(name, 0) for name in _COUNTS} | {"version": row["version"]} for row in rows]
    upsert = _insert(conn, s)
    upsert = upsert.on_conflict_do_update(
        index_elements=["version"], set_={name: s.c[name] + upsert.excluded[name] for name in _COUNTS}
    )
    conn.execute(upsert, full)


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both backends spell it the same)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
