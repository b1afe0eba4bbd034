"""The catalogue store in the training data: added movies join the vocabulary, changed titles and genres apply.

Movies added through the service's POST /movies (contract/catalogue.py) become rows of the catalogue like
the MovieLens files' own, so their stored ratings are trained on and the next version embeds them from
their ids too. A withdrawn movie stays in the data (its ratings still say what its raters like); the
service keeps it out of every answer, as the store says. Training reads the store up to a cut-off change
id, recorded in the manifest like the ratings' cut-off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pandas as pd

from contract.catalogue import GENRE_SEPARATOR, CatalogueEntry, CatalogueStore, fold, title_with_year
from contract.ratings import RatingsStore
from training.data import MovieLens

MAX_INTEGER_DIGITS = 18  # training keys movies by int64, as the service's POST /movies requires


def catalogue_last_id(ratings: RatingsStore) -> int:
    """The newest change in the catalogue store beside `ratings` (0: none, or no table yet)."""
    with CatalogueStore(ratings.url) as store:
        store.create_schema()
        return store.last_id()


def read_catalogue(ratings: RatingsStore, cutoff_id: int) -> dict[str, CatalogueEntry]:
    """Every movie's state in the catalogue store beside `ratings`, from the changes with id <= cutoff_id."""
    with CatalogueStore(ratings.url) as store:
        store.create_schema()
        return fold({}, store.changes_after(0, up_to=cutoff_id))


def with_catalogue(data: MovieLens, entries: Mapping[str, CatalogueEntry], cutoff_id: int) -> MovieLens:
    """`data` with the store's movies: added ones appended (kept sorted by movie_id, as the loaders keep
    them), changed titles and genres applied. Ids that are not integers are skipped, as for ratings."""
    movies = data.movies.copy()
    position = {int(m): i for i, m in enumerate(movies["movie_id"].tolist())}
    added = []
    for entry in entries.values():
        if not (entry.movie_id.isdigit() and len(entry.movie_id) <= MAX_INTEGER_DIGITS):
            continue
        movie_id = int(entry.movie_id)
        row = position.get(movie_id)
        if row is None:
            if entry.added:
                title = title_with_year(entry.title or "", entry.year)
                added.append({"movie_id": movie_id, "title": title, "genres": GENRE_SEPARATOR.join(entry.genres or ())})
            continue
        if entry.title is not None:
            movies.loc[row, "title"] = title_with_year(entry.title, entry.year)
        if entry.genres is not None:
            movies.loc[row, "genres"] = GENRE_SEPARATOR.join(entry.genres)
    if added:
        frame = pd.DataFrame(added).astype({"movie_id": movies["movie_id"].dtype})
        movies = pd.concat([movies, frame], ignore_index=True)
        movies = movies.sort_values("movie_id", kind="stable").reset_index(drop=True)
    return dataclasses.replace(data, movies=movies, catalogue_cutoff_id=cutoff_id)
