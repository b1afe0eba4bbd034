"""Turn POST /movies and PATCH /movies/{movie_id} into catalogue changes: checked, committed, then served here.

A change is acknowledged only once committed to the catalogue store; this replica applies it before it
answers (so the movie is rateable and recommendable here at once), the others on their next read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from contract import catalogue as store_module
from contract.catalogue import CatalogueEntry, CatalogueStoreError, MovieChange
from service.artifacts import ModelVersion
from service.catalogue_schemas import MoviePatch, MoviesRequest, NewMovies
from service.dependencies import Service
from service.errors import (
    CatalogueUnavailableError,
    DuplicateMovieError,
    InvalidRequestError,
    NotInCatalogueError,
    UnknownMovieError,
)
from service.live_version import base_of

log = logging.getLogger(__name__)

MAX_NAMED = 10  # movies named in one error message; the rest are counted


async def add_movies(service: Service, version: ModelVersion, request: MoviesRequest) -> dict[str, Any]:
    """Store the request's movies in one transaction and serve them; the answer (MoviesAdded) once committed.

    Raises:
        InvalidRequestError: too many movies.
        NotInCatalogueError: a genre the served version lacks.
        DuplicateMovieError: a movie_id the catalogue already has, or one named twice.
        CatalogueUnavailableError: the database failed the write; nothing is acknowledged.
    """
    movies = request.movies()
    where = "body.movies.{}.{}" if isinstance(request.root, NewMovies) else "body.{1}"
    limit = service.settings.max_movies_per_request
    if len(movies) > limit:
        raise InvalidRequestError(
            f"body.movies: {len(movies)} movies in one request; at most {limit} (RECSYS_MAX_MOVIES_PER_REQUEST): "
            "send them in several requests"
        )
    ids = [m.movie_id for m in movies]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DuplicateMovieError(f"body.movies: movie_id(s) {twice[:MAX_NAMED]} appear more than once; send each once")
    for i, movie in enumerate(movies):
        _check_genres(version, movie.genres, where.format(i, "genres"))
    _refuse_duplicates([i for i in ids if i in version.row_of_movie], version)
    new = [store_module.NewMovie(m.movie_id, m.title, tuple(m.genres), m.year) for m in movies]
    try:
        await asyncio.to_thread(service.catalogue.store.add, new)
    except store_module.DuplicateMovieError as e:
        _refuse_duplicates(e.movie_ids, version)
    except CatalogueStoreError as e:
        raise _unavailable(e) from None
    served = await caught_up(service)
    return {"added": len(movies), "movies": [_shown(served, service.catalogue.entries(), m.movie_id) for m in movies]}


async def change_movie(service: Service, version: ModelVersion, movie_id: str, patch: MoviePatch) -> dict[str, Any]:
    """Store one movie's change and serve it; the answer (CatalogueMovie) once committed.

    Raises:
        NotInCatalogueError: a genre the served version lacks.
        UnknownMovieError: no such movie in the served version nor in the catalogue store.
        CatalogueUnavailableError: the database failed the write; nothing is acknowledged.
    """
    if patch.genres is not None:
        _check_genres(version, patch.genres, "body.genres")
    store = service.catalogue.store
    try:
        if movie_id not in version.row_of_movie and await asyncio.to_thread(store.movie, movie_id) is None:
            raise UnknownMovieError(
                f"movie_id {movie_id!r} is neither in version {version.name} nor added through POST /movies"
            )
        change = MovieChange(
            movie_id,
            title=patch.title,
            genres=None if patch.genres is None else tuple(patch.genres),
            year=patch.year,
            available=patch.available,
        )
        await asyncio.to_thread(store.change, change)
    except CatalogueStoreError as e:
        raise _unavailable(e) from None
    served = await caught_up(service)
    return _shown(served, service.catalogue.entries(), movie_id)


async def caught_up(service: Service) -> ModelVersion:
    """This replica's served version once it reflects every change committed so far (its own included).

    Called after an admin change here, and when POST /ratings names a movie this replica has not read yet
    (added through another replica since its last refresh). A change is committed whatever happens here: a
    failure to apply it (the candidate tower cannot load) is logged, the answer still says what is stored,
    and the next refresh tries again.
    """
    try:
        await service.catalogue.refresh(lambda: service.registry.current, service.registry.offer)
    except Exception:
        log.exception("a committed catalogue change could not be applied yet; the next refresh retries")
    return service.registry.require()


def _shown(version: ModelVersion, stored: Mapping[str, CatalogueEntry], movie_id: str) -> dict[str, Any]:
    """A movie as CatalogueMovie: the store's state (`stored`, as this replica last read it) over `version`'s."""
    entry = stored.get(movie_id)
    row = version.row_of_movie.get(movie_id)
    before = version.movies[row] if row is not None else {"title": "", "genres": []}
    return {
        "movie_id": movie_id,
        "title": entry.title if entry is not None and entry.title is not None else before["title"],
        "genres": list(entry.genres) if entry is not None and entry.genres is not None else before["genres"],
        "year": entry.year if entry else None,
        "available": entry.available if entry else True,
        "change_id": entry.last_id if entry else 0,
    }


def _check_genres(version: ModelVersion, genres: Sequence[str], where: str) -> None:
    known = base_of(version).genre_masks.keys()
    unknown = sorted(set(genres) - known)
    if unknown:
        raise NotInCatalogueError(
            f"{where}: unknown genre(s) {unknown} in version {version.name}; known genres: {sorted(known)}"
        )


def _refuse_duplicates(movie_ids: Sequence[str], version: ModelVersion) -> None:
    if movie_ids:
        named = sorted(movie_ids)
        more = f" (and {len(named) - MAX_NAMED} more)" if len(named) > MAX_NAMED else ""
        raise DuplicateMovieError(
            f"movie_id(s) {named[:MAX_NAMED]}{more} are already in the catalogue (version {version.name} or added "
            "before); change a movie with PATCH /movies/{movie_id}, or pick an unused id"
        )


def _unavailable(error: CatalogueStoreError) -> CatalogueUnavailableError:
    log.error("a catalogue write failed: %s", error)
    return CatalogueUnavailableError(
        "the catalogue database is unavailable, so the change was not acknowledged; retry the request"
    )
