"""Turn a request into top-k movies: exclusions, genre filter, popularity for unknown users."""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from contract.ratings import StoredRating
from contract.user_ratings import NO_VALUE, known_bound
from service.artifacts import ModelVersion
from service.at_now import AtNow, UserState
from service.batcher import Batcher, Neighbours
from service.config import Settings
from service.errors import InvalidRequestError, NotInCatalogueError, ServiceError, UnknownUserError
from service.reasons import reasons
from service.schemas import RecommendRequest

_NO_ROWS = np.zeros(0, dtype=np.int64)


def check_k(k: int, max_k: int) -> None:
    """Schemas bound k from below; the upper bound is a setting (each app's OpenAPI states it), checked here."""
    if k > max_k:
        raise InvalidRequestError(f"k={k} is above the maximum of {max_k} (RECSYS_MAX_K)")


def _genre_mask(version: ModelVersion, genres: list[str]) -> np.ndarray | None:
    if not genres:
        return None
    unknown = sorted(set(genres) - version.genre_masks.keys())
    if unknown:
        raise NotInCatalogueError(
            f"unknown genre(s) {unknown} in version {version.name}; known genres: {sorted(version.genre_masks)}"
        )
    mask = np.zeros(version.num_movies, dtype=bool)  # new array: the caller may change it
    for genre in genres:
        mask |= version.genre_masks[genre]
    return mask


def _rows(version: ModelVersion, movie_ids: Sequence[str]) -> np.ndarray:
    # movie_ids the catalogue does not know cannot be recommended anyway, so they are simply ignored.
    return np.array([version.row_of_movie[m] for m in movie_ids if m in version.row_of_movie], dtype=np.int64)


def user_state(
    version: ModelVersion,
    request: RecommendRequest,
    bound: int,
    stored: Sequence[StoredRating],
    timestamp: int,
    keep_at_now: int = 0,
) -> UserState:
    """The user's seen movies and history (their ratings below `bound`, contract.user_ratings.known_bound) from
    the version's ratings, the ratings stored since and the request.

    `stored` holds the user's ratings that reached the ratings store after the version's data was taken, so a
    rating counts the moment it is stored, on every replica, and again once a retrain has learnt from it. A
    known user's state at now is computed once and kept by the version (service/at_now.py), for at most
    `keep_at_now` users.
    """
    user_row = version.user_rows.get(request.user_id)  # None: a user the version was not trained on
    rows, times, values = version.ratings_of(request.user_id)
    now_key = None
    if request.timestamp is None and not stored and not request.history:
        now_key = version.now_key(user_row, timestamp, times, bound)
        kept = None if now_key is None else version.at_now(now_key)
        if kept is not None:
            return kept.state
    if stored:
        stored_rows = np.array([version.row_of_movie.get(r.movie_id, -1) for r in stored], dtype=np.int64)
        keep = stored_rows >= 0
        stored_times = np.array([r.timestamp for r in stored], dtype=np.int64)[keep]
        stored_values = np.array([r.rating for r in stored], dtype=np.float32)[keep]
        rows, times = np.concatenate([rows, stored_rows[keep]]), np.concatenate([times, stored_times])
        values = np.concatenate([values, stored_values])
        order = np.argsort(times, kind="stable")
        rows, times, values = rows[order], times[order], values[order]
    length = version.history_length
    history, history_ratings = version.history_at(rows, times, values, bound)
    # Nothing stored since the version: these are the user's ratings in it, whose part was folded in at load.
    rating_part = version.rating_part(rows, times, values, bound, None if stored else user_row)
    own = _rows(version, request.history)
    if len(own):  # ids a client sends for a user the service has never seen count as their newest ratings
        history = [*(version.movies[row]["movie_id"] for row in own), *history][:length]
        history_ratings = [*[NO_VALUE] * len(own), *history_ratings][:length]
        rows = np.concatenate([rows, own])
    state = UserState(rows, history, history_ratings, user_row is not None, rating_part, now_key)
    if now_key is not None:
        version.keep_at_now(now_key, state, keep_at_now)
    return state


def _excluded_rows(version: ModelVersion, request: RecommendRequest, seen: np.ndarray) -> np.ndarray:
    seen_rows = seen if request.exclude_seen else _NO_ROWS
    if not request.exclude:
        return seen_rows
    return np.concatenate([seen_rows, _rows(version, request.exclude)])


def _items(
    version: ModelVersion,
    rows: np.ndarray,
    scores: np.ndarray | None,
    because: list[list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    movies = version.movies
    score_list = scores.tolist() if scores is not None else [None] * len(rows)
    named = because if because is not None else [None] * len(rows)
    return [
        {"rank": rank, **movies[row], "score": score, "because": reasons}
        for rank, (row, score, reasons) in enumerate(zip(rows.tolist(), score_list, named, strict=True), start=1)
    ]


def best_allowed(hits: Neighbours, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k allowed hits of a search, skipping ScaNN's NaN padding."""
    keep = np.isfinite(hits.scores) & allowed[hits.rows]
    return hits.rows[keep][:k], hits.scores[keep][:k]


def exact_top_k(version: ModelVersion, query: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the allowed movies only: the fallback when a filtered search came up short."""
    rows = np.flatnonzero(allowed)
    scores = version.served_candidates[rows] @ query
    if len(rows) > k:
        top = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[top], scores[top]
    order = np.argsort(-scores, kind="stable")
    return rows[order], scores[order]


def search_depth(k: int, num_movies: int, genre_count: int, num_excluded: int) -> int:
    """How many neighbours to ask the index for so that k survive the filters, usually.

    Excluded movies (mostly seen ones) cluster at the top of a user's ranking, so each may cost a slot;
    genre matches are assumed spread evenly through the ranking.
    """
    return min(num_movies, math.ceil(k * num_movies / max(genre_count, 1)) + num_excluded)


def _allowed(version: ModelVersion, request: RecommendRequest, seen: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Which movies may be answered (bool [num_movies]), how many were excluded, how many match the genres."""
    genres = _genre_mask(version, request.genres)
    genre_count = version.num_movies if genres is None else int(np.count_nonzero(genres))
    allowed = version.all_movies() if genres is None else genres
    excluded = _excluded_rows(version, request, seen)
    allowed[excluded] = False
    return allowed, len(excluded), genre_count


async def _search(
    version: ModelVersion,
    batcher: Batcher,
    request: RecommendRequest,
    timestamp: int,
    state: UserState,
    depth: int,
    kept: AtNow | None,
) -> Neighbours:
    query = None if kept is None else kept.query
    hits = await batcher.search(
        version, request.user_id, timestamp, state.history, depth, state.history_ratings, state.rating_part, query
    )
    if kept is not None:
        kept.query = hits.query
    return hits


async def _model_top_k(
    version: ModelVersion, batcher: Batcher, request: RecommendRequest, timestamp: int, state: UserState
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The answer's movie rows and scores, and the query embedding they were ranked by.

    The best `version.rerank_pool` allowed movies (at least k) are found first, then re-ordered by the rating
    term (contract/rating_model.py: those the user is predicted to dislike go last among them).
    """
    k = request.k
    wanted = max(k, version.rerank_pool)
    kept = None if state.now_key is None else version.at_now(state.now_key)
    plain = not (request.genres or request.exclude or not request.exclude_seen)
    if kept is not None and kept.query is not None and plain:
        answer = kept.answer(wanted, version.rerank_pool == 0)
        if answer is not None:
            return answer[0][:k], answer[1][:k], kept.query
    allowed, num_excluded, genre_count = _allowed(version, request, state.seen)
    available = int(np.count_nonzero(allowed))
    if available == 0:
        return _NO_ROWS, None, None
    depth = search_depth(wanted, version.num_movies, genre_count, num_excluded)
    if available <= depth:
        # The filters leave fewer movies than the search would have to look at (a rare genre in a large
        # catalogue): scoring just those is exact and cheaper, so the batcher only embeds the query.
        hits = await _search(version, batcher, request, timestamp, state, 0, kept)
        rows, scores = exact_top_k(version, hits.query, allowed, wanted)
    else:
        hits = await _search(version, batcher, request, timestamp, state, depth, kept)
        rows, scores = best_allowed(hits, allowed, wanted)
        if len(rows) < min(wanted, available):  # the filters left too few hits: search all allowed movies
            rows, scores = exact_top_k(version, hits.query, allowed, wanted)
    rows, scores = version.rerank(hits.query, rows, scores)
    if kept is not None and plain:  # the same answer to every plain request of this user from now on
        kept.answers[wanted] = (rows, scores)
    return rows[:k], scores[:k], hits.query


async def recommend(
    version: ModelVersion,
    batcher: Batcher,
    request: RecommendRequest,
    settings: Settings,
    stored: Sequence[StoredRating] = (),
    popular: np.ndarray | None = None,
) -> dict[str, Any]:
    """The top-k answer for one request, as a JSON-ready dict shaped like RecommendResponse.

    A user the version does not know and with nothing read as history (no ratings, none stored, no `history`
    in the request, or only ratings below the version's history_min_rating: a dislike says what not to show,
    not what to) gets the popularity ranking: at now `popular` (what is rated recently,
    service/popularity.py) when given, at an explicit moment the version's all-time one, with what their
    ratings predict they will dislike last among its best (RatingModel.popular_rerank); everyone else the
    model, with their history.

    Raises:
        InvalidRequestError: k above the maximum.
        NotInCatalogueError: a genre the version does not have.
        UnknownUserError: a user with no ratings at all when RECSYS_UNKNOWN_USER=404.
    """
    check_k(request.k, settings.max_k)
    timestamp = request.timestamp if request.timestamp is not None else int(time.time())
    bound = known_bound(timestamp, at_now=request.timestamp is None)
    state = user_state(version, request, bound, stored, timestamp, settings.at_now_users)
    personalised = state.known_user or bool(state.history)
    because = None
    if personalised:
        rows, scores, query = await _model_top_k(version, batcher, request, timestamp, state)
        if request.explain and query is not None:
            because = reasons(version, request.user_id, timestamp, state.history, state.history_ratings, query, rows)
    elif settings.unknown_user == "popular":
        allowed, _, _ = _allowed(version, request, state.seen)
        ranking = popular if popular is not None and request.timestamp is None else version.popularity
        shown = ranking[allowed[ranking]][: max(request.k, version.rerank_pool)]
        rows, scores = version.popular_rerank(state.rating_part, shown)[: request.k], None
    else:
        raise UnknownUserError(
            f"user_id {request.user_id!r} has no ratings in version {version.name}, none stored and no history "
            "in the request (this server answers such users with 404: RECSYS_UNKNOWN_USER=404)"
        )
    return {
        "user_id": request.user_id,
        "timestamp": timestamp,
        "effective_timestamp": version.effective_timestamp(timestamp),
        "model_version": version.name,
        "known_user": state.known_user,
        "personalised": personalised,
        "history_used": len(state.history),
        "items": _items(version, rows, scores, because),
    }


async def recommend_batch(
    requests: list[RecommendRequest],
    settings: Settings,
    answer: Callable[[RecommendRequest], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Answer several requests at once with `answer` (recommend() on the version each user is served); they
    share the batcher's model calls.

    Raises:
        InvalidRequestError: too many requests.
        ServiceError: what recommend() raises for one of them, with its index in the message.
    """
    if len(requests) > settings.max_batch_requests:
        raise InvalidRequestError(
            f"{len(requests)} requests in one batch; at most {settings.max_batch_requests} (RECSYS_MAX_BATCH_REQUESTS)"
        )

    async def one(index: int, request: RecommendRequest) -> dict[str, Any]:
        try:
            return await answer(request)
        except ServiceError as e:
            raise type(e)(f"requests[{index}]: {e.message}") from e

    results = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return {"results": results}
