"""An oracle of the rating term (contract/rating_model.py) from its documented formula and the version's
rating_model.npz alone, for tests that check what the server answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load_term(version_dir: Path) -> dict[str, Any]:
    with np.load(version_dir / "rating_model.npz") as term:
        return {name: term[name] for name in term.files}


def user_part(term: dict[str, Any], rows: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[1, p_u]: p_u by ridge regression of the user's stars on the movies' factors, with a user bias."""
    bias, factors, reg = term["item_bias"], term["item_factors"], float(term["reg"])
    x = np.hstack([factors[rows], np.ones((len(rows), 1))])
    bias_weight = float(term["user_bias_penalty"]) if "user_bias_penalty" in term else 1e-3  # older versions: 1e-3
    penalty = np.diag([reg] * factors.shape[1] + [reg * bias_weight])
    solved = np.linalg.solve(x.T @ x + penalty, x.T @ (stars - float(term["mean"]) - bias[rows]))
    return np.concatenate([[1.0], solved[:-1]])


def unit_term(term: dict[str, Any], user: np.ndarray) -> np.ndarray:
    """Each movie's predicted stars less the user's constant, divided by their spread over the movies."""
    spread = np.sqrt(user @ term["item_covariance"] @ user)
    return np.hstack([term["item_bias"][:, None], term["item_factors"]]) @ user / spread


def rating_term(term: dict[str, Any], query: np.ndarray, rows: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """What the term adds to each movie's score: `weight` of the user's tower-score spread, times unit_term."""
    tower_spread = np.sqrt(query @ term["tower_covariance"] @ query)
    return float(term["weight"]) * tower_spread * unit_term(term, user_part(term, rows, stars))


def scale(term: dict[str, Any], query: np.ndarray, user: np.ndarray) -> float:
    """s_u: what one predicted star above the user's own average adds to a score."""
    tower_spread = np.sqrt(query @ term["tower_covariance"] @ query)
    return float(term["weight"]) * float(tower_spread) / float(np.sqrt(user @ term["item_covariance"] @ user))


def answer(
    term: dict[str, Any], scores: np.ndarray, added: np.ndarray, s_u: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The server's top k from every movie's score (-inf: excluded): the best `demote_pool` re-ordered by score
    less `demote_penalty` per predicted star (`added` / s_u) past `demote_margin` below the user's average, the
    scores shown no lower than the first after the pool."""
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])]
    rescored = scores[order].astype(np.float64)
    pool = int(term["demote_pool"]) if "demote_pool" in term and float(term["demote_penalty"]) > 0 else 0
    if pool:
        head = order[:pool]
        below = np.maximum(-float(term["demote_margin"]) * s_u - added[head], 0.0)
        rescored[: len(head)] -= float(term["demote_penalty"]) * below
        again = np.argsort(-rescored[: len(head)], kind="stable")
        order[: len(head)], rescored[: len(head)] = head[again], rescored[: len(head)][again]
        if len(order) > len(head):  # shown no lower than the first score after the pool
            rescored[: len(head)] = np.maximum(rescored[: len(head)], rescored[len(head)])
    return order[:k], rescored[:k]
