"""Turn a ratings request into stored ratings: checked against the served catalogue, committed off the event loop."""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from contract.ratings import Rating, RatingsStore, RatingsStoreError, StoredRating
from service.artifacts import ModelVersion
from service.errors import FutureTimestampError, InvalidRequestError, NotInCatalogueError, RatingsUnavailableError
from service.schemas import NewRating, NewRatings, RatingsRequest

log = logging.getLogger(__name__)

MAX_NAMED = 10  # unknown movies named in one error message; the rest are counted
MAX_FUTURE_SECONDS = 86_400  # client clocks drift, but a rating further ahead than a day is a bug in the client


class RatingsWriter:
    """The app's ratings store: opened and closed by the lifespan, written to from worker threads."""

    def __init__(self, url: str, max_per_request: int, on_stored: Callable[[int], None]) -> None:
        self.url = url
        self.max_per_request = max_per_request
        self._on_stored = on_stored
        self._store: RatingsStore | None = None

    @property
    def store(self) -> RatingsStore:
        if self._store is None:
            raise RuntimeError("the ratings store is not open: the app's lifespan opens it")
        return self._store

    def open(self) -> None:
        """Connect and create the table unless present.

        Raises:
            RatingsStoreError: the database cannot be reached or written; the message says what to fix.
        """
        self._store = RatingsStore.with_schema(self.url)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def since(self, version: ModelVersion, user_id: str) -> list[StoredRating]:
        """The user's ratings stored after `version`'s data was taken (its cutoff id), oldest first.

        A failing database degrades the answer rather than failing it: the version's own ratings still count.
        """
        try:
            return self.store.since(user_id, version.manifest.data.ratings_cutoff_id)
        except RatingsStoreError as e:
            log.warning("answering without stored ratings: %s", e)
            return []

    async def add(self, version: ModelVersion, request: RatingsRequest) -> dict[str, Any]:
        """Store the request's ratings in one transaction; the answer (RatingsStored) exists only once committed.

        Raises:
            InvalidRequestError: more ratings than RECSYS_MAX_RATINGS_PER_REQUEST.
            NotInCatalogueError: movies not in `version`.
            FutureTimestampError: a rating dated more than a day ahead of the server's clock.
            RatingsUnavailableError: the database failed the write; nothing is acknowledged.
        """
        ratings = self._checked(version, request)
        try:
            # A worker thread: a commit waits for fsync (or another replica's write lock), the event loop must not.
            ids = await asyncio.to_thread(self.store.add, ratings)
        except RatingsStoreError as e:
            log.error("POST /ratings failed: %s", e)
            raise RatingsUnavailableError(
                "the ratings database is unavailable, so the ratings were not acknowledged; retry the request"
            ) from None
        self._on_stored(len(ids))
        return {"stored": len(ids), "ids": ids}

    def _checked(self, version: ModelVersion, request: RatingsRequest) -> list[Rating]:
        """The request's ratings with their timestamps, if they are few, not ahead, and of movies `version` has."""
        root = request.root
        given = root.ratings if isinstance(root, NewRatings) else [root]
        where = "body.ratings.{}.{}" if isinstance(root, NewRatings) else "body.{1}"
        if len(given) > self.max_per_request:
            raise InvalidRequestError(
                f"body.ratings: {len(given)} ratings in one request; at most {self.max_per_request} "
                "(RECSYS_MAX_RATINGS_PER_REQUEST): send them in several requests"
            )
        now = int(time.time())
        _check_not_ahead(given, now, where)
        unknown = [(i, r.movie_id) for i, r in enumerate(given) if r.movie_id not in version.row_of_movie]
        if unknown:
            named = "; ".join(
                f"{where.format(i, 'movie_id')}: {m!r} is not in the catalogue" for i, m in unknown[:MAX_NAMED]
            )
            more = f" (and {len(unknown) - MAX_NAMED} more)" if len(unknown) > MAX_NAMED else ""
            raise NotInCatalogueError(
                f"{named}{more} of the served version {version.name} ({version.num_movies} movies)"
            )
        return [Rating(r.user_id, r.movie_id, r.rating, r.timestamp if r.timestamp is not None else now) for r in given]


def _check_not_ahead(given: list[NewRating], now: int, where: str) -> None:
    """A rating's time depends on the server's clock, so no schema can bound it: it is checked here."""
    for i, rating in enumerate(given):
        if rating.timestamp is not None and rating.timestamp > now + MAX_FUTURE_SECONDS:
            raise FutureTimestampError(
                f"{where.format(i, 'timestamp')}: timestamp {rating.timestamp} is more than a day ahead of the "
                f"server's clock ({now}); send when the user rated, in Unix seconds or ISO-8601"
            )
