"""Would a genre-taste term in the served score help? (issue 19: a Scream + Scream 2 fan is served 1997 hits)

Tried by hand, a new user who rates Scream, Scream 2 and A Nightmare on Elm Street at 5 stars gets Titanic, The
Game and Contact first: the towers place Scream among the late-1997 hits its raters also rated. This measures
the obvious remedy before anyone builds it: a term that, like the rating term (contract/rating_model.py), folds
into the served vectors, so ScaNN and the offline ranks would score it as they score the rest:

    served score(u, i) = tower score + rating term + g_u * (t_u . c_i)

- `c_i` is movie i's genres, one-hot over ML-100K's genres and L2-normalised;
- `t_u` is the user's taste: the sum of their rated movies' `c_i`, weighed by 1 for a liked rating (>= 4
  stars) and 0 otherwise ("liked"), or by the stars less the user's mean ("centred"), L2-normalised;
- `g_u = weight * sd(user's tower scores over the movies) / sd(t_u . c_i over the movies)`, the rating term's
  scaling: the term moves each user's scores by `weight` of their own spread.

The default is fitted once per split and protocol fold; every setting scores the same served vectors with the
genre columns put in before the rating term's (whose columns the demotion reads last), through training's own
protocol tables. Choose on validation, read the test ratings after.

    python benchmarks/genre_term.py --seed 42 [--data-dir data] [--out benchmarks/results/genre_term.json]
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.seed_study import mean_over_seeds, per_split, split_cell, write_study
from training.config import TrainConfig
from training.evaluate import HeldOutQueries, protocol_tables, served_vectors
from training.fit import fit
from training.folds import Fold

WEIGHTS = (0.1, 0.25, 0.5, 1.0)
TASTES = ("liked", "centred")
NONE = "none"
PROTOCOLS = ("B", "T")


def setting_names() -> dict[str, tuple[str, float]]:
    """{name: (taste, weight)}, "none" being no genre term."""
    return {NONE: ("liked", 0.0), **{f"{t} {w}": (t, w) for t, w in itertools.product(TASTES, WEIGHTS)}}


def genre_matrix(movies: pd.DataFrame) -> np.ndarray:
    """float32 [movies, genres]: each movie's genres one-hot, L2-normalised ("unknown" is no genre)."""
    lists = [[g for g in str(genres).split("|") if g and g != "unknown"] for genres in movies["genres"]]
    names = sorted({g for genres in lists for g in genres})
    column = {g: i for i, g in enumerate(names)}
    matrix = np.zeros((len(movies), len(names)), np.float32)
    for row, genres in enumerate(lists):
        matrix[row, [column[g] for g in genres]] = 1.0
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)


def tastes(held_out: HeldOutQueries, genres: np.ndarray, taste: str) -> np.ndarray:
    """float32 [queries, genres]: t_u of the module docstring from the ratings each query knows."""
    rows, stars = held_out.known.movie_rows, held_out.known.values
    assert stars is not None
    out = np.zeros((len(held_out), genres.shape[1]), np.float32)
    for j, (a, b) in enumerate(zip(held_out.exclude_start.tolist(), held_out.exclude_end.tolist(), strict=True)):
        if b > a:
            mine = stars[a:b]
            weights = (mine >= 4).astype(np.float32) if taste == "liked" else (mine - mine.mean()).astype(np.float32)
            out[j] = weights @ genres[rows[a:b]]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def study_fold(fold: Fold, config: TrainConfig, protocol: str) -> dict[str, dict[str, Any]]:
    """{setting: {"_all" | "_liked" | "_disliked": table}} for one fitted fold."""
    assert fold.held_out is not None
    run = fit(config, fold, progress=False)
    rating, towers = run.rating_model, run.test_query_embeddings
    assert towers is not None and rating is not None
    queries, candidates = served_vectors(rating, towers, run.candidate_embeddings, fold.held_out)
    d = towers.shape[1]
    genres = genre_matrix(fold.data.movies)
    spread = np.einsum("nd,nd->n", towers @ rating.tower_covariance, towers)  # each user's tower-score variance
    covariance = np.cov(genres, rowvar=False).astype(np.float32)
    out: dict[str, dict[str, Any]] = {}
    for name, (taste, weight) in setting_names().items():
        t = tastes(fold.held_out, genres, taste)
        variance = np.einsum("ng,ng->n", t @ covariance, t)
        scale = np.where(variance > 1e-12, weight * np.sqrt(np.maximum(spread, 0) / np.maximum(variance, 1e-12)), 0)
        served_q = np.hstack([queries[:, :d], t * scale[:, None].astype(np.float32), queries[:, d:]])
        served_c = np.hstack([candidates[:, :d], genres, candidates[:, d:]])
        tables = protocol_tables(served_q, served_c, fold.popularity, fold.held_out, {protocol: True}, rating=rating)
        out[name] = {key.removeprefix(protocol) or "_all": table for key, table in tables.items()}
    return out


def row(label: str, tables: dict[str, dict[str, Any]], name: str) -> str:
    return " | ".join([label, *(split_cell(p, tables[p][name]) for p in PROTOCOLS)])


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Every setting on the seeds' mean validation and test figures (printed): the table of the docs."""
    validation, test = mean_over_seeds(results, "validation"), mean_over_seeds(results, "test")
    for name in setting_names():
        print(row(f"validation, {name}", validation, name), flush=True)
        print(row(f"test, {name}", test, name), flush=True)
    return {"mean_validation": validation, "mean_test": test}


def main(
    seed: Annotated[list[int], typer.Option()] = [42],  # noqa: B006  (typer reads the default)
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/genre_term.json"),
) -> None:
    """Fit the default per seed on validation and on test ratings; score every genre-term setting on both."""
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "settings": setting_names(), "seeds": {}}
    for s in seed:
        results["seeds"][str(s)] = dict(per_split(s, data_dir, study_fold))
    write_study(out, results, started, summary)


if __name__ == "__main__":
    typer.run(main)
