"""Benchmark: recent (time-decayed) against all-time popularity as the answer to a user with no ratings, on
protocol T's cold queries of real ML-100K.

Protocol T holds out the latest ratings and asks each at its own time t knowing every rating before t
(contract.user_ratings.known_bound). A cold query is one the service answers from the popularity ranking:
its user is not in the training part and has no rating before t, so nothing is excluded. Each ranking is
scored by the held-out movie's position (hit@k: among the first k):
- all-time, training part: popularity_ranking over the T training part, what training/evaluate.py scores today;
- decayed, half-life h: contract.popularity.DecayedPopularity over every rating before t, h = inf being the
  all-time count as of t. Queries are answered in time order, the ratings added as time passes.
The half-life is chosen on validation queries carved from the training part (its latest share, knowing only
the training part), then every ranking is scored once on the test queries. Writes
benchmarks/results/recent_popularity.json and prints a markdown table.

    python benchmarks/recent_popularity.py [--data-dir data]
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import typer

from benchmarks.machine import machine
from contract.popularity import DAY_SECONDS, DecayedPopularity
from contract.user_ratings import build_user_ratings, known_bound
from training.config import TrainConfig
from training.data import MovieLens, load_movielens
from training.evaluate import accuracy_table, popularity_ranking

HALF_LIVES_DAYS = (0.25, 1.0, 3.0, 7.0, 14.0, 30.0, 90.0, 365.0, math.inf)
STATIC = "all-time, training part"
BOOTSTRAP_DRAWS = 2000


@dataclass(frozen=True)
class ColdQueries:
    """One fold's cold queries, in time order, and the ratings they may know."""

    users: np.ndarray  # int64 [n]
    times: np.ndarray  # int64 [n], ascending
    targets: np.ndarray  # int64 [n]: the held-out movie's row
    known_rows: np.ndarray  # int64 [m]: every rating a query of this fold may know, in time order ...
    known_times: np.ndarray  # int64 [m]: ... it knows those below its bound
    train_rows: np.ndarray  # int64: the fold's training part, whose all-time count is today's fallback
    num_queries: int  # held-out ratings of the fold, cold or not


def temporal_split(times: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the earliest and of the latest `test_fraction` of the ratings, as
    training.dataset.split_ratings(how="temporal") splits them (imported from there, it would load TensorFlow)."""
    n = len(times)
    n_test = max(1, round(n * test_fraction))
    order = np.argsort(times, kind="stable")
    return np.sort(order[: n - n_test]), np.sort(order[n - n_test :])


def cold_queries(
    users: np.ndarray, rows: np.ndarray, times: np.ndarray, known: np.ndarray, test_fraction: float
) -> ColdQueries:
    """Protocol T over the ratings `known` (indices): its latest share held out, each knowing every rating of
    `known` before it; kept only those the service answers from popularity."""
    train, test = (known[part] for part in temporal_split(times[known], test_fraction))
    everything = build_user_ratings({"user_id": users[known], "timestamp": times[known]}, rows[known])
    bounds = known_bound(times[test], at_now=False)  # offline, every query names its moment
    start, end = everything.spans_before(users[test], bounds)
    trained = np.isin(users[test], users[train])
    cold = test[(start == end) & ~trained]
    cold = cold[np.argsort(times[cold], kind="stable")]
    in_time = known[np.argsort(times[known], kind="stable")]
    return ColdQueries(
        users=users[cold],
        times=times[cold],
        targets=rows[cold],
        known_rows=rows[in_time],
        known_times=times[in_time],
        train_rows=rows[train],
        num_queries=len(test),
    )


def decayed_ranks(queries: ColdQueries, num_movies: int, half_life_days: float) -> np.ndarray:
    """Position of each query's movie in the decayed ranking over the ratings before its time."""
    popularity = DecayedPopularity(num_movies, half_life_days * DAY_SECONDS)
    ranks = np.empty(len(queries.targets), dtype=np.int64)
    position = np.empty(num_movies, dtype=np.int64)
    moments, first = np.unique(queries.times, return_index=True)
    ends = np.append(first[1:], len(queries.times))
    added = 0
    for moment, lo, hi in zip(moments.tolist(), first.tolist(), ends.tolist(), strict=True):
        upto = int(np.searchsorted(queries.known_times, known_bound(moment, at_now=False), side="left"))
        popularity.add(queries.known_rows[added:upto], queries.known_times[added:upto])
        added = upto
        position[popularity.ranking()] = np.arange(num_movies)
        ranks[lo:hi] = position[queries.targets[lo:hi]]
    return ranks


def static_ranks(queries: ColdQueries, num_movies: int) -> np.ndarray:
    position = np.empty(num_movies, dtype=np.int64)
    position[popularity_ranking(queries.train_rows, num_movies)] = np.arange(num_movies)
    return position[queries.targets]


def user_bootstrap(users: np.ndarray, difference: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of a per-query difference, resampling users (a new user's first ratings,
    often several in one second, are not independent queries)."""
    groups, index = np.unique(users, return_inverse=True)
    sums, counts = np.bincount(index, difference, len(groups)), np.bincount(index, minlength=len(groups))
    draws = np.random.default_rng(seed).integers(0, len(groups), (BOOTSTRAP_DRAWS, len(groups)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def name_of(half_life_days: float) -> str:
    return "decayed, all-time as of t (h = inf)" if math.isinf(half_life_days) else f"decayed, h = {half_life_days:g} d"


def score_fold(queries: ColdQueries, num_movies: int) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """{ranking: accuracy table} and {ranking: per-query ranks} over the fold's cold queries."""
    ranks = {STATIC: static_ranks(queries, num_movies)}
    ranks |= {name_of(h): decayed_ranks(queries, num_movies, h) for h in HALF_LIVES_DAYS}
    return {name: accuracy_table(r) for name, r in ranks.items()}, ranks


def choose(tables: dict[str, dict[str, float]]) -> float:
    """The half-life with the best validation hit@10, then hit@100, then the longest (the steadiest ranking)."""
    return max(HALF_LIVES_DAYS, key=lambda h: (tables[name_of(h)]["top_10"], tables[name_of(h)]["top_100"], h))


def markdown(folds: dict[str, dict[str, dict[str, float]]], counts: dict[str, tuple[int, int]], chosen: str) -> str:
    header = " | ".join(f"{fold} hit@10 | {fold} hit@100" for fold in folds)
    lines = [f"| ranking | {header} |", "| --- |" + " ---: |" * (2 * len(folds))]
    for name in folds["validation"]:
        cells = " | ".join(f"{t[name]['top_10']:.3f} | {t[name]['top_100']:.3f}" for t in folds.values())
        lines.append(f"| {name}{' (chosen)' if name == chosen else ''} | {cells} |")
    sizes = ", ".join(f"{fold}: {cold} cold queries of {users} users" for fold, (cold, users) in counts.items())
    return "\n".join([*lines, "", sizes])


def top_titles(data: MovieLens, ranking: np.ndarray, k: int = 10) -> list[str]:
    return [str(title) for title in data.movies["title"].to_numpy()[ranking[:k]]]


def main(
    data_dir: Annotated[Path, typer.Option(help="Holds ml-100k (python -m training fetch).")] = Path("data"),
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/recent_popularity.json"),
) -> None:
    started = time.perf_counter()
    data = load_movielens(data_dir, "ml-100k")
    users = data.ratings["user_id"].to_numpy(np.int64)
    times = data.ratings["timestamp"].to_numpy(np.int64)
    rows = np.searchsorted(data.movies["movie_id"].to_numpy(), data.ratings["movie_id"].to_numpy()).astype(np.int64)
    num_movies, test_fraction = len(data.movies), TrainConfig().test_fraction
    everything = np.arange(len(rows))
    training_part, _ = temporal_split(times, test_fraction)
    folds = {  # validation knows only the training part: the test ratings stay unseen until the choice is made
        "validation": cold_queries(users, rows, times, training_part, test_fraction),
        "test": cold_queries(users, rows, times, everything, test_fraction),
    }
    tables, ranks, seconds = {}, {}, {}
    for fold, queries in folds.items():
        scoring = time.perf_counter()
        tables[fold], ranks[fold] = score_fold(queries, num_movies)
        seconds[fold] = round(time.perf_counter() - scoring, 2)
    half_life = choose(tables["validation"])
    chosen = name_of(half_life)
    intervals = {}
    for fold, queries in folds.items():
        for k in (10, 100):
            difference = (ranks[fold][chosen] < k).astype(np.float64) - (ranks[fold][STATIC] < k)
            intervals[f"{fold}_top_{k}"] = user_bootstrap(queries.users, difference)
    final = DecayedPopularity(num_movies, half_life * DAY_SECONDS)
    final.add(rows, times)
    counts = {fold: (len(q.targets), len(np.unique(q.users))) for fold, q in folds.items()}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "data": {"dataset": "ml-100k", "fingerprint": data.fingerprint, "num_ratings": len(rows)},
        "test_fraction": test_fraction,
        "half_lives_days": [h if math.isfinite(h) else "inf" for h in HALF_LIVES_DAYS],
        "folds": {
            fold: {
                "held_out_ratings": q.num_queries,
                "cold_queries": len(q.targets),
                "cold_users": len(np.unique(q.users)),
                "rankings": tables[fold],
            }
            for fold, q in folds.items()
        },
        "chosen": {"ranking": chosen, "half_life_days": half_life if math.isfinite(half_life) else "inf"},
        "chosen_minus_all_time_training_part_95pct_user_bootstrap": intervals,
        "top_10_after_every_rating": {
            chosen: top_titles(data, final.ranking()),
            "all-time": top_titles(data, popularity_ranking(rows, num_movies)),
        },
        "scoring_seconds": seconds,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(tables, counts, chosen))
    test = tables["test"]
    print(f"\nchosen on validation: {chosen}; test hit@10 {test[chosen]['top_10']:.3f}, all-time (training part) "
          f"{test[STATIC]['top_10']:.3f}; {result['wall_seconds']} s")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
