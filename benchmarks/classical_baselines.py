"""Benchmark: the strong classical baselines (item-kNN and EASE) on the same folds and the same scoring as the model.

Each baseline reads, per held-out rating, exactly the ratings the service would know then: under A and B the
user's training ratings, under T every rating before the query. Those movies, newest first, each weigh
`decay`**position; the scores are that weighted row times an item-item matrix:
- item-kNN: co-occurrence of two movies among the training users, cosine-normalised;
- EASE (Steck, WWW 2019): the closed-form ridge regression of each movie on every other one, weight `lam`.
A query with no known rating gets the popularity ranking, as the service answers it. Settings are chosen per
protocol on validation ratings carved from the training part (as in quality_sweep.py), then the chosen
setting is scored once on the test ratings. Writes benchmarks/results/classical_baselines.json.

    python benchmarks/classical_baselines.py [--data-dir data] [--seed 42]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import typer

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.machine import machine
from contract.user_ratings import UserRatings, known_bound, span_pairs
from training.config import TrainConfig
from training.evaluate import LIKED, model_ranks, popularity_scores, split_tables
from training.fetch import fetch
from training.folds import Fold, prepare
from training.item_item_prior import ease_weights

DECAYS = (1.0, 0.9, 0.8)
RECENT_WINDOWS_DAYS = (1.0, 3.0, 7.0, 14.0, 30.0, 90.0)  # protocol T's recently-popular baseline
DAY = 86_400
EASE_LAMBDAS = (100.0, 300.0, 1000.0, 3000.0)
FAMILIES = ("item_knn", "ease")
PROTOCOLS = {"A": False, "B": True, "T": True}  # protocol -> seen movies excluded


def interactions(known: UserRatings, num_movies: int) -> np.ndarray:
    """float32 [users, movies]: 1 where the user rated the movie in the fold's training ratings."""
    matrix = np.zeros((len(known.user_ids), num_movies), dtype=np.float32)
    matrix[np.repeat(np.arange(len(known.user_ids)), np.diff(known.indptr)), known.movie_rows] = 1.0
    return matrix


def item_knn(matrix: np.ndarray) -> np.ndarray:
    """Cosine similarity of movies' rating columns, zero on the diagonal."""
    counts = matrix.sum(axis=0)
    similarity = matrix.T @ matrix / np.sqrt(np.outer(counts, counts) + 1.0)
    np.fill_diagonal(similarity, 0.0)
    return similarity.astype(np.float32)


def ease(matrix: np.ndarray, lam: float) -> np.ndarray:
    """EASE's item-item weights (training.item_item_prior.ease_weights, the towers' prior) on a rating matrix."""
    return ease_weights(matrix.T @ matrix, lam).astype(np.float32)


def weighted_history(fold: Fold, num_movies: int, decay: float, liked_only: bool = False) -> np.ndarray:
    """float32 [queries, movies]: each query's known movies (its exclusion span), weighted decay**age; with
    `liked_only`, only the ones rated at least LIKED stars (the rest still excluded from the answer)."""
    held = fold.held_out
    assert held is not None
    rows = np.zeros((len(held), num_movies), dtype=np.float32)
    # span_pairs over positions rather than movies: each pair's index into known.movie_rows gives its age.
    positions = np.arange(len(held.known.movie_rows))
    query, index = span_pairs(positions, held.exclude_start, held.exclude_end)
    age = held.exclude_end[query] - 1 - index  # 0 for the newest
    weight = decay**age
    if liked_only and held.known.values is not None:
        weight = weight * (held.known.values[index] >= LIKED)
    np.add.at(rows, (query, held.known.movie_rows[index]), weight)
    return rows


def score(fold: Fold, weights: np.ndarray, decay: float, exclude: bool, liked_only: bool = False) -> dict[str, Any]:
    """Top-k table of a baseline on a fold's held-out ratings, through the same ranking code as the model;
    under B and T also `liked` and `disliked`: the held-out ratings that said so."""
    assert fold.held_out is not None
    queries = weighted_history(fold, len(weights), decay, liked_only)
    ranks = model_ranks(queries, weights.T, fold.popularity, fold.held_out, exclude)
    tables = split_tables("all", ranks, fold.held_out.stars if exclude else None)
    return {**tables.pop("all"), **{key.removeprefix("all_"): table for key, table in tables.items()}}


def recently_popular(fold: Fold, num_movies: int, window_days: float) -> dict[str, Any]:
    """Protocol T's recency baseline: each query ranks the movies by how often they were rated in the
    `window_days` before its time (every rating known then, anyone's), ties by all-time training count, with
    the user's own movies excluded; a temporal split is known to flatter it."""
    held = fold.held_out
    assert held is not None and fold.test is not None
    bounds = known_bound(fold.test["timestamp"].to_numpy(np.int64), at_now=False)
    order = np.lexsort((held.known.timestamps, held.known.movie_rows))
    movies, times = held.known.movie_rows[order], held.known.timestamps[order]
    starts = np.searchsorted(movies, np.arange(num_movies + 1))
    counts = np.empty((len(bounds), num_movies), dtype=np.float32)
    for movie in range(num_movies):
        rated = times[starts[movie] : starts[movie + 1]]
        counts[:, movie] = np.searchsorted(rated, bounds) - np.searchsorted(rated, bounds - window_days * DAY)
    counts += popularity_scores(fold.popularity) / (num_movies + 1)  # in (-1, 0]: breaks ties, never a count
    everyone_ranked = dataclasses.replace(held, fallback=np.zeros(len(held), dtype=bool))
    ranks = model_ranks(counts, np.eye(num_movies, dtype=np.float32), fold.popularity, everyone_ranked, True)
    tables = split_tables("all", ranks, held.stars)
    return {**tables.pop("all"), **{key.removeprefix("all_"): table for key, table in tables.items()}}


def baselines(fold: Fold, num_movies: int) -> dict[str, np.ndarray]:
    matrix = interactions(fold.known, num_movies)
    return {"item_knn": item_knn(matrix), **{f"ease_{lam:g}": ease(matrix, lam) for lam in EASE_LAMBDAS}}


def _split(table: dict[str, Any]) -> str:
    if "liked" not in table:
        return ""
    return f"liked top-10 {table['liked']['top_10']:.3f}, disliked top-10 {table['disliked']['top_10']:.3f}"


def _validate(
    protocol: str, fold: Fold, weights: dict[str, np.ndarray], exclude: bool, num_movies: int
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every setting's validation table, and each family's choice: the best top-100 (recently-popular under T:
    the best top-10 window)."""
    rows = {
        f"{name}_decay_{decay:g}": score(fold, w, decay, exclude) for name, w in weights.items() for decay in DECAYS
    }
    if protocol == "T":
        rows |= {
            f"recently_popular_{days:g}_days": recently_popular(fold, num_movies, days) for days in RECENT_WINDOWS_DAYS
        }
    for key, table in rows.items():
        print(f"validation {protocol} {key}: top-10 {table['top_10']:.3f} top-100 {table['top_100']:.3f}")
    chosen = {
        family: max((key for key in rows if key.startswith(family)), key=lambda k: rows[k]["top_100"])
        for family in FAMILIES
    }
    if protocol == "T":
        recent = [key for key in rows if key.startswith("recently_popular")]
        chosen["recently_popular"] = max(recent, key=lambda k: rows[k]["top_10"])
    return rows, chosen


def _test(
    protocol: str, fold: Fold, weights: dict[str, np.ndarray], exclude: bool, num_movies: int, chosen: dict[str, str]
) -> dict[str, dict[str, object]]:
    """The chosen settings on the test ratings: each family on the whole history and on its liked part (issue
    19), and under T the 7-day and the best-window recently-popular rankings (issue 20)."""
    test: dict[str, dict[str, object]] = {}
    variants: list[tuple[str, str, Any]] = []
    for family, setting in chosen.items():
        if family == "recently_popular":
            for variant, window in (("recently_popular_7_days", "recently_popular_7_days"), (family, setting)):
                days = float(window.split("_")[2])
                variants.append((variant, window, lambda days=days: recently_popular(fold, num_movies, days)))
            continue
        name, decay = setting.rsplit("_decay_", 1)
        for variant, liked_only in ((family, False), (f"{family}_liked_history", True)):
            variants.append(
                (variant, setting, lambda n=name, d=float(decay), o=liked_only: score(fold, weights[n], d, exclude, o))
            )
    for variant, setting, run in variants:
        table = run()
        test[variant] = {"setting": setting, **table}
        print(f"test {protocol} {variant} {setting}: top-10 {table['top_10']:.3f} top-100 {table['top_100']:.3f}",
              _split(table))  # fmt: skip
    return test


def main(
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    seed: Annotated[int, typer.Option(help="Seed of the random split (A and B), as TrainConfig.seed.")] = 42,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/classical_baselines.json"),
) -> None:
    fetch("ml-100k", data_dir, log=lambda m: print(m, file=sys.stderr))
    started = time.perf_counter()
    tables: dict[str, dict[str, dict[str, float]]] = {}
    chosen: dict[str, dict[str, str]] = {}
    test: dict[str, dict[str, dict[str, object]]] = {}
    for scored_on in ("validation", "test"):
        prepared = prepare(TrainConfig(seed=seed, evaluate_on=scored_on, refit=False), data_dir)
        num_movies = len(prepared.data.movies)
        assert prepared.temporal is not None
        folds = {"A": prepared.random, "B": prepared.random, "T": prepared.temporal}
        matrices = {"AB": baselines(prepared.random, num_movies), "T": baselines(prepared.temporal, num_movies)}
        for protocol, exclude in PROTOCOLS.items():
            fold = folds[protocol]
            weights = matrices["T" if protocol == "T" else "AB"]
            if scored_on == "validation":
                tables[protocol], chosen[protocol] = _validate(protocol, fold, weights, exclude, num_movies)
            else:
                test[protocol] = _test(protocol, fold, weights, exclude, num_movies, chosen[protocol])
    result = {
        "machine": machine(),
        "seed": seed,
        "validation": tables,
        "chosen_on_validation": chosen,
        "test": test,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
