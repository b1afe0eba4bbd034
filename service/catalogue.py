"""What the page browses besides recommendations: title search, a user's ratings, the version's training curve."""

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract.manifest import TRAINING_CURVE
from contract.ratings import StoredRating
from contract.user_ratings import NO_VALUE
from service.artifacts import ModelVersion
from service.errors import MissingFileError

# version -> (row, casefolded title), most rated first; weak, so a swapped-out version is freed with its index.
_titles: weakref.WeakKeyDictionary[ModelVersion, list[tuple[int, str]]] = weakref.WeakKeyDictionary()


def _folded_titles(version: ModelVersion) -> list[tuple[int, str]]:
    titles = _titles.get(version)
    if titles is None:
        titles = [(row, version.movies[row]["title"].casefold()) for row in version.popularity.tolist()]
        _titles[version] = titles
    return titles


def search(version: ModelVersion, q: str, limit: int) -> list[dict[str, Any]]:
    """Movies whose title contains `q` (case-insensitive), most rated first, at most `limit`."""
    needle = q.casefold()
    found: list[dict[str, Any]] = []
    for row, title in _folded_titles(version):
        if needle in title:
            found.append(version.movies[row])
            if len(found) == limit:
                break
    return found


def user_ratings(
    version: ModelVersion, user_id: str, stored: Sequence[StoredRating], limit: int
) -> list[dict[str, Any]]:
    """The user's ratings in `version`'s data and those stored since its cutoff, newest first, at most `limit`.

    A version's ratings carry their stars (None only for a version exported before seen.npz kept them). A
    stored rating of a movie the served catalogue lacks (a later version dropped it) keeps its id with a None
    title.
    """
    rows, times, values = version.ratings_of(user_id)
    stars = [None if value == NO_VALUE else value for value in values.tolist()]
    rated: list[dict[str, Any]] = [
        {**_named(version, version.movies[row]["movie_id"]), "timestamp": when, "source": "version", "rating": value}
        for row, when, value in zip(rows.tolist(), times.tolist(), stars, strict=True)
    ]
    rated += [
        {**_named(version, r.movie_id), "timestamp": r.timestamp, "source": "stored", "rating": r.rating}
        for r in stored
    ]
    # Both parts are oldest first and stored ratings came later: reversed, a stable sort keeps that on equal times.
    rated.reverse()
    rated.sort(key=lambda rating: -rating["timestamp"])
    return rated[:limit]


def _named(version: ModelVersion, movie_id: str) -> dict[str, Any]:
    row = version.row_of_movie.get(movie_id)
    return {"movie_id": movie_id, "title": None if row is None else version.movies[row]["title"]}


def training_curve(models_dir: Path, version: ModelVersion) -> bytes:
    """The PNG the exporter wrote next to the model (held-out top-100 accuracy against epoch).

    Raises:
        MissingFileError: the version directory has no curve (a hand-built version, or one gone from disk).
    """
    path = models_dir / version.name / TRAINING_CURVE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"version {version.name} has no {TRAINING_CURVE} (looked in {path.parent})") from None
