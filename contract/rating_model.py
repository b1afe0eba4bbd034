"""The rating term of a served score: what the user is predicted to think of a movie, in stars.

The towers learn which movie a user rates next, not how much they will like it. On protocol T the default
ranked a movie the user would rate 1-2 stars nearly as high as one they would rate 4-5 (issue 19). A small
biased matrix factorisation fit on the stars adds that second signal:

    served score(u, i) = tower score + s_u * (b_i + p_u . v_i)

- `b_i` and `v_i` are each movie's bias and factors, fit on the training stars (training/rating_model.py).
- `p_u` is folded in from every rating the user has at the asked time, a 1-star one as much as a 5-star one.
  A rating stored a second ago counts at once, with no retrain. The tower's history leaves dislikes out.
- `s_u = weight * sd(user's tower scores over the movies) / sd(their rating term over the movies)`: the term
  moves each user's scores by `weight` of that user's own spread. The scale needs no calibration against the
  tower, and a user whose tower scores are sharp keeps them.

The term is a dot product of [1, p_u] with [b_i, v_i], so it folds into the two embeddings: the served query is
[tower query, s_u * (1, p_u)] and the served candidate is [candidate embedding, b_i, v_i]. The ScaNN index is
built over the served candidates, and the offline ranks score the served vectors. Training's evaluation, the
gate's rescoring and the server compute them with the functions below and no other.

A linear term moves a movie the user will dislike only as far as it moves every other: pushing dislikes out of
the top 10 that way cost the whole ranking (a weight of 0.5 took B top-100 down by 0.077). So the best
`demote_pool` movies are then re-ordered among themselves: a movie predicted `demote_margin` stars or more below
the user's own average loses `demote_penalty * s_u` per star past that margin (`demotions`). The pool is the
same set as before, so the ranking below it, and every top-k with k >= the pool, keep their movies; within it
the movies the user is predicted to like come first. Not a dot product, so the server applies it to its
search's best hits (`rerank`) and training's ranks to the same pool (training.evaluate.target_ranks).

A movie the rating model never saw (added to the catalogue since) has bias and factors 0, an average movie's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.user_ratings import NO_VALUE, UserRatings

BIAS_PENALTY = 1e-3  # a bias column is barely regularised: a user's shifts every movie alike and ranks nothing
_EPSILON = 1e-12


def ridge_penalty(width: int, reg: float, bias_penalty: float = BIAS_PENALTY) -> np.ndarray:
    """float64 [width, width]: the ridge's diagonal, reg for every column but the last, a bias, weighed
    bias_penalty * reg."""
    penalty = np.full(width, reg)
    penalty[-1] = bias_penalty * reg
    return np.diag(penalty)


def ridge_solve(x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """argmin_w |x w - y|^2 + w' P w with P = ridge_penalty: the fit of each row of the matrix factorisation
    (training/rating_model.py); a user's fold-in here solves the same with P made once."""
    return np.linalg.solve(x.T @ x + ridge_penalty(x.shape[1], reg), x.T @ y)


@dataclass(frozen=True, eq=False)
class RatingModel:
    """The rating term's arrays, fit on a version's training stars."""

    mean: float  # the training stars' mean
    item_bias: np.ndarray  # float32 [M]: each movie's bias, in stars
    item_factors: np.ndarray  # float32 [M, f]
    reg: float  # the ridge weight of the fit, used again to fold a user in
    weight: float  # share of a user's tower-score spread that the term may move
    tower_covariance: np.ndarray  # float32 [d, d]: covariance over the version's movies of its candidate embeddings
    item_covariance: np.ndarray  # float32 [1 + f, 1 + f]: the same of [b_i, v_i]
    demote_pool: int = 0  # the best movies re-ordered by `demotions` (0: none)
    demote_margin: float = 0.0  # stars below the user's predicted average a movie may be before it is pushed down
    demote_penalty: float = 0.0  # score lost per predicted star past the margin, in units of the term's scale s_u
    # The ridge weight of the user's own bias in the fold-in, as a multiple of reg (the fit's is BIAS_PENALTY).
    # Barely there, a user whose ratings are all alike (five horror films at 1 star) is fit by the bias alone:
    # p_u = 0, and their dislike says nothing about which movies. Weighed like p_u, part of it goes to p_u.
    user_bias_penalty: float = BIAS_PENALTY
    _design: np.ndarray = field(init=False, repr=False)  # float64 [M, 1 + f]: each movie's [v_i, 1]
    _expected: np.ndarray = field(init=False, repr=False)  # float64 [M]: mean + b_i
    _penalty: np.ndarray = field(init=False, repr=False)  # the ridge's diagonal, the bias column's barely there
    no_ratings: np.ndarray = field(init=False, repr=False)  # float64 [1 + f]: [1, 0, ...], a user without stars

    @property
    def width(self) -> int:
        """Columns the term adds to the served vectors: 1 + f."""
        return 1 + int(self.item_factors.shape[1])

    @property
    def rerank_pool(self) -> int:
        """How many of an answer's best movies `rerank` re-orders: demote_pool, or 0 without a penalty."""
        return self.demote_pool if self.demote_penalty > 0 else 0

    def item_part(self, num_movies: int) -> np.ndarray:
        """float32 [num_movies, 1 + f]: [b_i, v_i] per movie row; rows past the model's (added movies) are 0."""
        part = np.zeros((num_movies, self.width), dtype=np.float32)
        known = min(num_movies, len(self.item_bias))
        part[:known, 0] = self.item_bias[:known]
        part[:known, 1:] = self.item_factors[:known]
        return part

    def moved(self, rows: np.ndarray, num_movies: int) -> RatingModel:
        """The same term in a larger catalogue: the model's movie i at row rows[i], the other rows 0."""
        bias = np.zeros(num_movies, dtype=np.float32)
        factors = np.zeros((num_movies, self.width - 1), dtype=np.float32)
        bias[rows], factors[rows] = self.item_bias, self.item_factors
        return dataclasses.replace(self, item_bias=bias, item_factors=factors)

    def __post_init__(self) -> None:
        # Per request the fold-in costs a gather, a [1 + f]^2 Gram matrix and one solve, so what does not
        # depend on the user is made once: each movie's [v_i, 1] row, its mean + b_i, the ridge penalty.
        rows = np.hstack([self.item_factors, np.ones((len(self.item_bias), 1), np.float32)]).astype(np.float64)
        object.__setattr__(self, "_design", rows)
        object.__setattr__(self, "_expected", (self.mean + self.item_bias).astype(np.float64))
        object.__setattr__(self, "_penalty", ridge_penalty(self.width, self.reg, self.user_bias_penalty))
        object.__setattr__(self, "no_ratings", np.eye(1, self.width)[0])

    def user_part(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """float64 [1 + f]: [1, p_u], p_u the ridge fit of the user's ratings (movie rows and their stars).

        Ratings whose value is unknown (NO_VALUE) and movies the model does not have are left out; with none
        left, p_u is 0 and only the movies' biases rank. The same fit as `ridge_solve` with a bias column.
        """
        rows, values = np.asarray(rows, dtype=np.int64), np.asarray(values, dtype=np.float64)
        keep = (values != NO_VALUE) & (rows >= 0) & (rows < len(self.item_bias))
        if not keep.all():
            rows, values = rows[keep], values[keep]
        part = self.no_ratings.copy()
        if not len(rows):
            return part
        x = self._design[rows]  # the last column, 1, is the user's bias: solved with p_u and dropped
        residual = values - self._expected[rows]
        part[1:] = np.linalg.solve(x.T @ x + self._penalty, x.T @ residual)[:-1]
        return part

    def user_parts(self, ratings: UserRatings, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """float64 [n, 1 + f]: `user_part` of ratings[starts[j]:ends[j]] for each query j (offline scoring)."""
        if ratings.values is None:
            raise ValueError("the rating term needs the ratings' stars; these ratings keep none")
        rows, values = ratings.movie_rows, ratings.values
        return np.array(
            [self.user_part(rows[a:b], values[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        ).reshape(len(starts), self.width)

    def served_queries(self, queries: np.ndarray, user_parts: np.ndarray) -> np.ndarray:
        """float32 [n, d + 1 + f]: each tower query followed by its user part, scaled to `weight` of its spread."""
        queries = np.asarray(queries, dtype=np.float32)
        parts = np.asarray(user_parts, dtype=np.float32)
        tower_var = np.einsum("nd,nd->n", queries @ self.tower_covariance, queries)
        term_var = np.einsum("nd,nd->n", parts @ self.item_covariance, parts)
        scale = self.weight * np.sqrt(np.maximum(tower_var, 0.0) / np.maximum(term_var, _EPSILON))
        return np.hstack([queries, parts * scale[:, None].astype(np.float32)])

    def shortfalls(self, served_queries: np.ndarray, served_candidates: np.ndarray) -> np.ndarray:
        """float32 [n, m]: how far below the margin each of `served_candidates` [m, D] is predicted for each of
        `served_queries` [n, D] (the served vectors, the term's columns last), in units of s_u: 0 for a movie
        the user is not predicted to dislike.

        The query's last columns are s_u (1, p_u), so `term` below is s_u (b_i + p_u . v_i): s_u times the stars
        the user is predicted to give the movie above their own average; the margin is demote_margin stars.
        """
        width = self.width
        tail = np.asarray(served_queries, dtype=np.float32)[:, -width:]
        term = tail @ np.asarray(served_candidates, dtype=np.float32)[:, -width:].T
        floor = -self.demote_margin * tail[:, :1]  # s_u * -margin
        return np.maximum(floor - term, 0.0).astype(np.float32, copy=False)

    def demotions(self, served_queries: np.ndarray, served_candidates: np.ndarray) -> np.ndarray:
        """float32 [n, m]: how far each of `served_candidates` falls in the ranking of each of `served_queries`
        when it is in the demote pool: demote_penalty * s_u per predicted star past the margin (`shortfalls`)."""
        return self.demote_penalty * self.shortfalls(served_queries, served_candidates)

    def popular_demotions(self, served_queries: np.ndarray, served_candidates: np.ndarray) -> np.ndarray:
        """float32 [n, m]: the demotions of a popularity answer (a user with ratings but no history: only
        dislikes), whose scores are minus the rank: every movie the user is predicted to dislike falls behind
        all the others of the pool, popularity ordering each group. A user without stars (p_u = 0) is predicted
        nothing beyond the movies' biases, which the popularity already reflects: no demotion."""
        tail = np.asarray(served_queries, dtype=np.float32)[:, -self.width :]
        with_stars = np.any(tail[:, 1:] != 0, axis=1, keepdims=True)
        disliked = (self.shortfalls(served_queries, served_candidates) > 0) & with_stars
        return disliked.astype(np.float32) * np.float32(len(served_candidates) + 1)

    def popular_rerank(self, user_part: np.ndarray, rows: np.ndarray, served_candidates: np.ndarray) -> np.ndarray:
        """A popularity answer's movie rows (most popular first) as `popular_demotions` re-orders its first
        demote_pool for the user part `user_part` ([1, p_u]: s_u does not change who is demoted)."""
        pool = min(self.rerank_pool, len(rows))
        if pool == 0 or not user_part[1:].any():  # no stars: nothing to re-order by (popular_demotions)
            return rows
        ranks = -np.arange(pool, dtype=np.float32)
        head = ranks - self.popular_demotions(user_part[None, :], served_candidates[rows[:pool]])[0]
        return np.concatenate([rows[:pool][np.argsort(-head, kind="stable")], rows[pool:]])

    def rerank(
        self, served_query: np.ndarray, rows: np.ndarray, scores: np.ndarray, served_candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One query's best hits (movie rows and scores, best first, every one allowed) with the first
        demote_pool re-scored by `demotions` and re-ordered among themselves (ties keep their order); the
        rest follow unchanged.

        A demoted movie's score is floored at the best score after the pool: it is ranked by its own, but an
        answer longer than the pool never shows scores rising down the list. `served_candidates` may be only
        their last `width` columns, the term's: the server keeps those apart, so that a request gathers 17
        floats a movie rather than the whole served row.
        """
        pool = min(self.rerank_pool, len(rows))
        if pool == 0:
            return rows, scores
        head = scores[:pool] - self.demotions(served_query[None, :], served_candidates[rows[:pool]])[0]
        order = np.argsort(-head, kind="stable")
        shown = head[order] if pool == len(rows) else np.maximum(head[order], scores[pool])
        return np.concatenate([rows[:pool][order], rows[pool:]]), np.concatenate([shown, scores[pool:]])


def new_rating_model(
    mean: float,
    item_bias: np.ndarray,
    item_factors: np.ndarray,
    reg: float,
    weight: float,
    candidates: np.ndarray,
    demote: tuple[int, float, float] = (0, 0.0, 0.0),
    user_bias_penalty: float = BIAS_PENALTY,
) -> RatingModel:
    """A RatingModel whose covariances are those of `candidates` (the version's candidate embeddings) and of
    the fitted item part; `demote` is (demote_pool, demote_margin, demote_penalty)."""
    item = np.hstack([item_bias[:, None], item_factors])
    return RatingModel(
        mean=float(mean),
        item_bias=item_bias.astype(np.float32),
        item_factors=item_factors.astype(np.float32),
        reg=float(reg),
        weight=float(weight),
        tower_covariance=np.atleast_2d(np.cov(candidates.T, bias=True)).astype(np.float32),
        item_covariance=np.atleast_2d(np.cov(item.T, bias=True)).astype(np.float32),
        demote_pool=int(demote[0]),
        demote_margin=float(demote[1]),
        demote_penalty=float(demote[2]),
        user_bias_penalty=float(user_bias_penalty),
    )


def served_candidates(candidates: np.ndarray, model: RatingModel | None) -> np.ndarray:
    """float32 [n, d (+ 1 + f)]: what the index searches: the candidate embeddings, then the rating term's item
    part when the version has one."""
    if model is None:
        return candidates
    return np.hstack([candidates, model.item_part(len(candidates))]).astype(np.float32)


def served_queries(queries: np.ndarray, model: RatingModel | None, user_parts: np.ndarray | None) -> np.ndarray:
    """The queries the index is searched with: `queries` themselves, or extended by `model` with `user_parts`."""
    if model is None:
        return queries
    assert user_parts is not None, "a version with a rating term needs each query's user part"
    return model.served_queries(queries, user_parts)


def write_rating_model(path: Path, model: RatingModel) -> None:
    np.savez(
        path,
        mean=np.float64(model.mean),
        item_bias=model.item_bias,
        item_factors=model.item_factors,
        reg=np.float64(model.reg),
        weight=np.float64(model.weight),
        tower_covariance=model.tower_covariance,
        item_covariance=model.item_covariance,
        demote_pool=np.int64(model.demote_pool),
        demote_margin=np.float64(model.demote_margin),
        demote_penalty=np.float64(model.demote_penalty),
        user_bias_penalty=np.float64(model.user_bias_penalty),
    )


def load_rating_model(path: Path, num_movies: int, embedding_dim: int) -> RatingModel:
    """The rating term in `path`, its shapes checked (contract.contents.read_rating_model reads a version's).

    Raises:
        ValueError: the arrays do not fit the version (another version's file, or a truncated one).
    """
    with np.load(path, allow_pickle=False) as f:
        model = RatingModel(
            mean=float(f["mean"]),
            item_bias=f["item_bias"].astype(np.float32),
            item_factors=f["item_factors"].astype(np.float32),
            reg=float(f["reg"]),
            weight=float(f["weight"]),
            tower_covariance=f["tower_covariance"].astype(np.float32),
            item_covariance=f["item_covariance"].astype(np.float32),
            # Versions exported before the demotion have none.
            demote_pool=int(f["demote_pool"]) if "demote_pool" in f.files else 0,
            demote_margin=float(f["demote_margin"]) if "demote_margin" in f.files else 0.0,
            demote_penalty=float(f["demote_penalty"]) if "demote_penalty" in f.files else 0.0,
            # Versions exported before it folded users in with the fit's own, BIAS_PENALTY.
            user_bias_penalty=float(f["user_bias_penalty"]) if "user_bias_penalty" in f.files else BIAS_PENALTY,
        )
    width = model.width
    expected = {
        "item_bias": ((num_movies,), model.item_bias.shape),
        "item_factors": ((num_movies, width - 1), model.item_factors.shape),
        "tower_covariance": ((embedding_dim, embedding_dim), model.tower_covariance.shape),
        "item_covariance": ((width, width), model.item_covariance.shape),
    }
    for name, (want, got) in expected.items():
        if want != got:
            raise ValueError(f"{path.name}: {name} is {got}, the version needs {want}")
    return model
