"""The rating term at ML-25M size: its ALS fit in training, and the fold-in of every user a server does at load.

training/rating_model.py fits a biased matrix factorisation by alternating least squares in NumPy, one ridge
solve per user and per movie a round; the server folds every known user in once when it loads a version
(service/artifacts.py) and a user who rated since at each request. On ML-100K the fit takes about a second;
this measures both at GroupLens's ML-25M shape (162,541 users, 62,423 movies, 25,000,095 ratings) with the
default's factors, ridge and rounds, on ratings drawn at random with a long-tailed count per user and per
movie (the cost depends on those counts, not on what the stars say). Peak memory is the process's.

    python benchmarks/rating_term_scale.py [--users 162541 --movies 62423 --ratings 25000095]
        [--out benchmarks/results/rating_term_scale.json]
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.results_file import write_results
from contract.user_ratings import UserRatings, build_user_ratings
from training.config import TrainConfig
from training.rating_model import fit_rating_model


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports kB


def long_tailed(count: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """`count` positive integers summing to about `total`, log-normally spread (a few heavy raters, many light)."""
    weights = rng.lognormal(0.0, 1.2, count)
    return np.maximum(1, np.round(weights / weights.sum() * total)).astype(np.int64)


def random_ratings(users: int, movies: int, ratings: int, seed: int) -> UserRatings:
    rng = np.random.default_rng(seed)
    per_user = long_tailed(users, ratings, rng)
    user_ids = np.repeat(np.arange(users, dtype=np.int64), per_user)
    popularity = long_tailed(movies, ratings, rng).astype(np.float64)
    movie_rows = rng.choice(movies, size=len(user_ids), p=popularity / popularity.sum()).astype(np.int32)
    columns = {
        "user_id": user_ids,
        "timestamp": rng.integers(789_652_009, 1_574_327_703, len(user_ids)),
        "rating": rng.integers(1, 11, len(user_ids)) / 2.0,  # half stars, as ML-25M
    }
    return build_user_ratings(columns, movie_rows)


def main(
    users: Annotated[int, typer.Option()] = 162_541,
    movies: Annotated[int, typer.Option()] = 62_423,
    ratings: Annotated[int, typer.Option()] = 25_000_095,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/rating_term_scale.json"),
) -> None:
    """Fit the term and fold every user in, timing each and recording peak memory."""
    config = TrainConfig()
    started = time.perf_counter()
    known = random_ratings(users, movies, ratings, seed)
    result: dict[str, Any] = {
        "machine": machine(),
        "shape": {"users": users, "movies": movies, "ratings": len(known.movie_rows)},
        "config": {"factors": config.rating_factors, "reg": config.rating_reg, "weight": config.rating_weight},
        "data_seconds": round(time.perf_counter() - started, 1),
        "peak_gb_after_data": round(peak_gb(), 2),
    }
    print(f"data: {result['shape']} in {result['data_seconds']} s, peak {result['peak_gb_after_data']} GB", flush=True)
    width = config.embedding_dim + config.item_item_width  # the candidate embeddings the covariance is of
    candidates = np.random.default_rng(seed).normal(size=(movies, width)).astype(np.float32)
    started = time.perf_counter()
    model = fit_rating_model(
        known, candidates, config.rating_factors, config.rating_reg, config.rating_weight, seed, config.rating_demote
    )
    assert model is not None
    result["fit_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_gb_after_fit"] = round(peak_gb(), 2)
    print(f"ALS fit: {result['fit_seconds']} s, peak {result['peak_gb_after_fit']} GB", flush=True)
    started = time.perf_counter()
    model.user_parts(known, known.indptr[:-1], known.indptr[1:])
    result["fold_in_every_user_seconds"] = round(time.perf_counter() - started, 1)
    heaviest = int(np.argmax(np.diff(known.indptr)))
    rows, values = known.ratings_at(heaviest)[0], known.ratings_at(heaviest)[2]
    started = time.perf_counter()
    for _ in range(100):
        model.user_part(rows, values)
    result["fold_in_heaviest_user_ms"] = round((time.perf_counter() - started) * 10, 2)
    result["heaviest_user_ratings"] = len(rows)
    result["peak_gb"] = round(peak_gb(), 2)
    print(
        f"fold-in of every user (a server's load): {result['fold_in_every_user_seconds']} s; one request of the "
        f"heaviest user ({len(rows)} ratings): {result['fold_in_heaviest_user_ms']} ms; peak {result['peak_gb']} GB"
    )
    write_results(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
