"""Benchmark: leave-one-out next-item prediction, the protocol of the sequential-recommendation literature.

Each user's latest rating is held out and asked at its time with every rating before it (its movies excluded
from the ranking), ranked against the whole catalogue: HR@10 (the held-out movie among the first 10) and
NDCG@10 (1 / log2(rank + 2) when it is). The model (TrainConfig's default, or --set overrides) trains on all
other ratings; EASE and item-kNN read the same history through benchmarks/classical_baselines.py, with their
setting chosen on a validation fold (each user's second-to-last rating held out, the latest never seen);
most-popular counts the training ratings. Queries go through training/evaluate.py's ranking, the same code and
fallbacks as protocols A/B/T. Writes benchmarks/results/leave_one_out_<dataset>.json and prints a table.

    python benchmarks/leave_one_out.py --data-dir data [--dataset ml-1m] [--set history_pooling=\\"mean\\"]
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import typer

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.classical_baselines import DECAYS, baselines, weighted_history
from benchmarks.machine import machine
from training.config import TrainConfig
from training.data import load_movielens
from training.evaluate import baseline_ranks, model_ranks, served_vectors
from training.fit import fit
from training.folds import Fold, leave_one_out_fold

K = 10


def hit_and_ndcg(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    """HR@k and NDCG@k of 0-based ranks (one relevant movie per query, so the ideal DCG is 1)."""
    hits = ranks < k
    return {
        f"hr_{k}": float(hits.mean()),
        f"ndcg_{k}": float(np.where(hits, 1.0 / np.log2(ranks + 2.0), 0.0).mean()),
    }


def classical_ranks(fold: Fold, weights: np.ndarray, decay: float) -> np.ndarray:
    assert fold.held_out is not None
    return model_ranks(weighted_history(fold, len(weights), decay), weights.T, fold.popularity, fold.held_out, True)


def main(
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    dataset: Annotated[str, typer.Option(help="ml-100k, or ml-1m after `training fetch --dataset ml-1m`.")] = (
        "ml-100k"
    ),
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="A TrainConfig override, name=JSON value; repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option()] = 42,
    out: Annotated[Path | None, typer.Option(help="Default: benchmarks/results/leave_one_out_<dataset>.json")] = None,
) -> None:
    started = time.perf_counter()
    overrides: dict[str, Any] = {}
    for item in set_ or []:
        name, _, value = item.partition("=")
        overrides[name] = json.loads(value)
    data = load_movielens(data_dir, dataset)
    num_movies = len(data.movies)
    rows: dict[str, dict[str, float]] = {}
    chosen: dict[str, str] = {}
    folds = {
        scored_on: leave_one_out_fold(TrainConfig(dataset=dataset, seed=seed, evaluate_on=scored_on), data)
        for scored_on in ("validation", "test")
    }
    matrices = {scored_on: baselines(fold, num_movies) for scored_on, fold in folds.items()}
    for family in ("item_knn", "ease"):
        settings = [(name, d) for name in matrices["validation"] if name.startswith(family) for d in DECAYS]
        scored = {
            s: hit_and_ndcg(classical_ranks(folds["validation"], matrices["validation"][s[0]], s[1])) for s in settings
        }
        name, decay = max(scored, key=lambda s: (scored[s][f"ndcg_{K}"], scored[s][f"hr_{K}"]))
        chosen[family] = f"{name}_decay_{decay:g}"
        rows[family] = hit_and_ndcg(classical_ranks(folds["test"], matrices["test"][name], decay))
    test = folds["test"]
    assert test.held_out is not None
    rows["most_popular"] = hit_and_ndcg(baseline_ranks(test.popularity, test.held_out, exclude=True))
    config = TrainConfig(dataset=dataset, seed=seed, **overrides)
    fitting = time.perf_counter()
    run = fit(config, test, progress=False)
    fit_seconds = time.perf_counter() - fitting
    assert run.test_query_embeddings is not None
    queries, candidates = served_vectors(
        run.rating_model, run.test_query_embeddings, run.candidate_embeddings, test.held_out
    )
    ranks = model_ranks(queries, candidates, test.popularity, test.held_out, True, rating=run.rating_model)
    rows["model"] = hit_and_ndcg(ranks)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "dataset": dataset,
        "fingerprint": data.fingerprint,
        "seed": seed,
        "users": len(test.held_out),
        "model_overrides": overrides,
        "baseline_settings_chosen_on_validation": chosen,
        "test": rows,
        "fit_seconds": round(fit_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(f"| {dataset}, leave-one-out, {len(test.held_out)} users | HR@{K} | NDCG@{K} |\n| --- | ---: | ---: |")
    for name, row in rows.items():
        print(f"| {name} | {row[f'hr_{K}']:.4f} | {row[f'ndcg_{K}']:.4f} |")
    path = out or Path(f"benchmarks/results/leave_one_out_{dataset}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
