"""Chooses how a user's ratings are folded into the rating term (issue 19): the weight of their own bias, and
whether a user with only dislikes gets their popularity answer re-ordered by it.

The fold-in (contract/rating_model.py, RatingModel.user_part) solves a user's factors p_u and bias together.
With the bias barely regularised (the fit's 1e-3 of the ridge weight), a user whose ratings are all alike is
fit by the bias alone: five horror films at 1 star, or Star Wars alone at 1 star, give p_u = 0, so the term
predicts nothing about which movies they will dislike, and the same holds for five films at 5 stars. Weighed
like p_u, part of a uniform rating goes to p_u, towards or away from those movies' factors. A user with ratings
but no history (only dislikes) is answered from popularity; `popular` re-orders that answer's best movies so
that those the term predicts they will dislike come last (RatingModel.popular_rerank).

- The towers and the default rating term are fitted once per fold, seed and split; each setting refolds the
  users and re-scores the same towers with training's protocol tables (training.evaluate.model_ranks), as
  served. `fallback` rows: the queries answered from popularity whose user has ratings (only dislikes).
- Chosen on validation ratings carved from training, on the mean of the seeds, then reported on test. The
  rule: the largest T liked top-10 minus T disliked top-10 among the settings whose T and B top-100 over all
  ratings stay within `--tolerance` of the current setting (bias 0.001, popular answer not re-ordered).

    python benchmarks/rating_fold_in.py --seed 42 --seed 7 --seed 1 [--data-dir data] [--weight 30 --weight 100]
        [--out benchmarks/results/rating_fold_in.json]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.seed_study import mean_over_seeds, per_split, split_cell, write_study
from training.config import TrainConfig
from training.evaluate import accuracy_table, model_ranks, served_vectors, split_tables
from training.fit import fit
from training.folds import Fold

BIAS_PENALTIES = (0.001, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
CURRENT_WEIGHT = 0.001
CURRENT = f"bias {CURRENT_WEIGHT}, popular as is"
PROTOCOLS = {"B": "random", "T": "temporal"}


def setting_names(weights: Sequence[float] = BIAS_PENALTIES) -> dict[str, tuple[float, bool]]:
    """{name: (user_bias_penalty, popular answer re-ordered)}; the current setting is always among them."""
    weights = sorted({CURRENT_WEIGHT, *weights})
    return {
        f"bias {b}, popular {'re-ordered' if p else 'as is'}": (b, p)
        for b, p in itertools.product(weights, (False, True))
    }


def study_fold(
    fold: Fold, config: TrainConfig, protocol: str, weights: Sequence[float] = BIAS_PENALTIES
) -> dict[str, dict[str, Any]]:
    """{setting: {"_all" | "_liked" | "_disliked" | "_fallback": table}} for one fitted fold."""
    held_out = fold.held_out
    assert held_out is not None and held_out.stars is not None
    run = fit(config, fold, progress=False)
    assert run.test_query_embeddings is not None and run.rating_model is not None
    with_stars = held_out.exclude_end > held_out.exclude_start
    fallback = held_out.fallback & with_stars
    out: dict[str, dict[str, Any]] = {}
    for name, (bias, popular) in setting_names(weights).items():
        rating = dataclasses.replace(run.rating_model, user_bias_penalty=bias)
        queries, candidates = served_vectors(rating, run.test_query_embeddings, run.candidate_embeddings, held_out)
        ranks = model_ranks(queries, candidates, fold.popularity, held_out, True, rating=rating, popular_rerank=popular)
        split = split_tables(protocol, ranks, held_out.stars)
        tables = {key.removeprefix(protocol) or "_all": table for key, table in split.items()}
        tables["_fallback"] = accuracy_table(ranks[fallback])
        tables["_fallback_liked"] = accuracy_table(ranks[fallback & (held_out.stars >= 4)])
        tables["_fallback_disliked"] = accuracy_table(ranks[fallback & (held_out.stars <= 2)])
        tables["_fallback_count"] = {"queries": float(np.count_nonzero(fallback))}
        out[name] = tables
    return out


def chosen(validation: dict[str, dict[str, Any]], tolerance: float) -> str:
    """The rule of the module docstring over {protocol: {setting: tables}}."""

    def top(protocol: str, name: str, part: str, k: int) -> float:
        return float(validation[protocol][name][part][f"top_{k}"])

    def close(name: str) -> bool:
        return all(top(p, CURRENT, "_all", 100) - top(p, name, "_all", 100) <= tolerance for p in PROTOCOLS)

    keep = [name for name in validation["T"] if close(name)]
    return max(keep, key=lambda n: top("T", n, "_liked", 10) - top("T", n, "_disliked", 10))


def row(label: str, tables: dict[str, dict[str, Any]], name: str) -> str:
    cells = [label]
    for protocol in PROTOCOLS:
        t = tables[protocol][name]
        cells.append(
            f"{split_cell(protocol, t)} fallback ({t['_fallback_count']['queries']:.0f}) "
            f"liked {t['_fallback_liked']['top_10']:.3f} disliked {t['_fallback_disliked']['top_10']:.3f}"
        )
    return " | ".join(cells)


def summary(results: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """The setting chosen on the seeds' mean validation figures, and the mean test tables."""
    validation, test = mean_over_seeds(results, "validation"), mean_over_seeds(results, "test")
    best = chosen(validation, tolerance)
    seeds = len(results["seeds"])
    for name in validation["T"]:
        print(row(f"mean of {seeds} seeds, validation, {name}", validation, name), flush=True)
    for name in dict.fromkeys((CURRENT, best)):
        print(row(f"mean of {seeds} seeds, test, {name}", test, name), flush=True)
    return {"chosen_on_mean_validation": best, "setting": results["settings"][best], "mean_validation": validation,
            "mean_test": test}  # fmt: skip


def main(
    seed: Annotated[list[int], typer.Option()] = [42],  # noqa: B006  (typer reads the default)
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    tolerance: Annotated[float, typer.Option(help="Top-100 a chosen setting may cost, on T and on B.")] = 0.01,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/rating_fold_in.json"),
    weight: Annotated[list[float], typer.Option(help="User bias weights to try (0.001, the current, always is).")] = [  # noqa: B006
        *BIAS_PENALTIES
    ],
) -> None:
    """Fit the default per seed on validation and on test ratings; choose on the first, report the second."""
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "settings": setting_names(weight), "seeds": {}}
    for s in seed:
        per_seed: dict[str, Any] = dict(per_split(s, data_dir, functools.partial(study_fold, weights=weight)))
        per_seed["chosen"] = chosen(per_seed["validation"], tolerance)
        results["seeds"][str(s)] = per_seed
        for name in dict.fromkeys((CURRENT, per_seed["chosen"])):
            print(row(f"seed {s}, test, {name}", per_seed["test"], name), flush=True)
    write_study(out, results, started, functools.partial(summary, tolerance=tolerance))


if __name__ == "__main__":
    typer.run(main)
