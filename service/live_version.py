"""A loaded version with the catalogue store's changes applied: added movies appended, withdrawn ones hidden.

Everything downstream (recommend, similar, search, ratings) reads a version's rows, masks and searcher, so
the catalogue's changes are applied by serving a `LiveVersion` built from the loaded one: the added movies
are appended as rows after the version's own (embedded by its candidate tower and found exactly:
service/side_index.py), changed titles and genres replace the version's, and `all_movies()` and the genre
masks leave withdrawn movies out, so no answer can name one. The loaded version itself is never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from contract.catalogue import CatalogueEntry
from contract.rating_model import served_candidates
from service.artifacts import ModelVersion
from service.side_index import searcher_with_added


@dataclass(eq=False)
class LiveVersion(ModelVersion):
    """`base` as the catalogue stood at change id `catalogue_id`."""

    base: ModelVersion | None = None
    catalogue_id: int = 0
    available: np.ndarray | None = None  # bool [num_movies]: false for a withdrawn movie
    entries: Mapping[str, CatalogueEntry] = field(default_factory=dict)  # the store's state it was built from

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.available is not None:
            self._all_true = self.available.copy()  # what all_movies() copies: every request starts from it


def base_of(version: ModelVersion) -> ModelVersion:
    """The loaded version a served one was built from (itself when no change applies)."""
    return version.base if isinstance(version, LiveVersion) and version.base is not None else version


def catalogue_id_of(version: ModelVersion | None) -> int:
    """The newest catalogue change a served version reflects (0: none)."""
    return version.catalogue_id if isinstance(version, LiveVersion) else 0


def added_movies(base: ModelVersion, entries: Mapping[str, CatalogueEntry]) -> list[CatalogueEntry]:
    """The store's movies that `base` lacks, in the order they were added: they become rows after base's."""
    added = [e for e in entries.values() if e.added and e.movie_id not in base.row_of_movie]
    return sorted(added, key=lambda e: e.first_id)


def live_version(
    base: ModelVersion,
    entries: Mapping[str, CatalogueEntry],
    catalogue_id: int,
    embed: Callable[[Sequence[CatalogueEntry]], np.ndarray],
) -> ModelVersion:
    """`base` with `entries` applied (the store folded up to `catalogue_id`); `embed` gives the added movies'
    candidate embeddings, float32 [added, d]. Without entries, `base` itself."""
    if not entries:
        return base
    added = added_movies(base, entries)
    movies = list(base.movies)  # the version's dicts are shared; a changed movie gets a new dict
    available = np.ones(base.num_movies + len(added), dtype=bool)
    for entry in entries.values():
        row = base.row_of_movie.get(entry.movie_id)
        if row is None:
            continue
        if entry.title is not None or entry.genres is not None:
            movies[row] = _movie(entry, movies[row])
        available[row] = entry.available
    for offset, entry in enumerate(added):
        movies.append(_movie(entry, None))
        available[base.num_movies + offset] = entry.available
    parts: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(ModelVersion) if f.init}
    if added:
        side = np.asarray(embed(added), dtype=np.float32).reshape(len(added), base.candidate_embeddings.shape[1])
        embeddings = np.concatenate([base.candidate_embeddings, side])
        parts["candidate_embeddings"] = embeddings
        parts["row_of_movie"] = {**base.row_of_movie, **{e.movie_id: base.num_movies + i for i, e in enumerate(added)}}
        exact = base.manifest.index.kind == "brute_force"
        served = served_candidates(embeddings, base.rating)  # the rating term knows no added movie: 0 there
        parts["searcher"] = searcher_with_added(base.searcher, exact, served, base.num_movies)
    new_rows = np.arange(base.num_movies, base.num_movies + len(added), dtype=base.popularity.dtype)
    popularity = np.concatenate([base.popularity, new_rows])  # the added movies: nobody rated them in the data
    parts["popularity"] = popularity[available[popularity]]
    parts["movies"] = movies
    parts["genre_masks"] = _genre_masks(movies, available)
    return LiveVersion(**parts, base=base, catalogue_id=catalogue_id, available=available, entries=entries)


def _movie(entry: CatalogueEntry, before: dict[str, Any] | None) -> dict[str, Any]:
    """movies.json's shape, {movie_id, title, genres}, with the entry's fields over `before`'s."""
    title = entry.title if entry.title is not None else (before or {}).get("title", "")
    genres = list(entry.genres) if entry.genres is not None else (before or {}).get("genres", [])
    return {"movie_id": entry.movie_id, "title": title, "genres": genres}


def _genre_masks(movies: list[dict[str, Any]], available: np.ndarray) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for row, movie in enumerate(movies):
        if available[row]:
            for genre in movie["genres"]:
                masks.setdefault(genre, np.zeros(len(movies), dtype=bool))[row] = True
    for movie in movies:  # a genre whose movies are all withdrawn is still a genre: filtering by it finds none
        for genre in movie["genres"]:
            masks.setdefault(genre, np.zeros(len(movies), dtype=bool))
    return masks
