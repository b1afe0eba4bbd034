"""Chooses how the rating term re-orders each answer's best movies (issue 19): the demote pool, margin, penalty.

The linear rating term (benchmarks/rating_channel.py) moves every score alike, so pushing the movies a user
will dislike out of the top 10 that way cost the whole ranking: T disliked top-10 reached 0.08 only at a weight
of 0.5, with B top-100 down by 0.077. The demotion (contract/rating_model.py) re-orders only the best `pool`
movies of each answer: one predicted more than `margin` stars below the user's own average loses `penalty`
times the term's scale per star past it. Every top-k with k >= pool keeps its movies, so top-100 cannot move.

- The towers and the default rating term are fitted once per fold, seed and split; each setting re-orders the
  same served vectors, scored with training's own protocol tables (training.evaluate.model_ranks), as served.
- The setting is chosen on validation ratings carved from training, on the mean of the seeds, then reported on
  the test ratings. The rule: the lowest T disliked top-10 among the settings whose liked top-10, on T and on B,
  stays within `--tolerance` of no re-ordering (a user should lose no more of what they will like than issue
  19 allows elsewhere); ties go to the smaller pool, then the smaller penalty.

    python benchmarks/rating_demotion.py --seed 42 --seed 7 --seed 1 [--data-dir data]
        [--out benchmarks/results/rating_demotion.json]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.seed_study import mean_over_seeds, per_split, split_cell, write_study
from training.config import TrainConfig
from training.evaluate import protocol_tables, served_vectors
from training.fit import fit
from training.folds import Fold

POOLS = (20, 30, 50, 100)
MARGINS = (0.0, 0.25, 0.5)
PENALTIES = (3.0, 5.0, 10.0, 30.0)
NONE = "none"
PROTOCOLS = {"B": "random", "T": "temporal"}


def setting_names() -> dict[str, tuple[int, float, float]]:
    """{name: (pool, margin, penalty)}, "none" being no re-ordering."""
    grid = {f"pool {p} margin {m} penalty {x}": (p, m, x) for p, m, x in itertools.product(POOLS, MARGINS, PENALTIES)}
    return {NONE: (0, 0.0, 0.0), **grid}


def study_fold(fold: Fold, config: TrainConfig, protocol: str) -> dict[str, dict[str, Any]]:
    """{setting: {"_all" | "_liked" | "_disliked": table}} for one fitted fold."""
    assert fold.held_out is not None
    run = fit(config, fold, progress=False)
    assert run.test_query_embeddings is not None and run.rating_model is not None
    queries, candidates = served_vectors(
        run.rating_model, run.test_query_embeddings, run.candidate_embeddings, fold.held_out
    )
    out: dict[str, dict[str, Any]] = {}
    for name, (pool, margin, penalty) in setting_names().items():
        rating = dataclasses.replace(run.rating_model, demote_pool=pool, demote_margin=margin, demote_penalty=penalty)
        tables = protocol_tables(queries, candidates, fold.popularity, fold.held_out, {protocol: True}, rating=rating)
        out[name] = {key.removeprefix(protocol) or "_all": table for key, table in tables.items()}
    return out


def chosen(validation: dict[str, dict[str, Any]], tolerance: float) -> str:
    """The rule of the module docstring over {protocol: {setting: tables}}."""
    settings = setting_names()

    def liked(protocol: str, name: str) -> float:
        return float(validation[protocol][name]["_liked"]["top_10"])

    keep = [n for n in settings if all(liked(p, NONE) - liked(p, n) <= tolerance for p in PROTOCOLS)]
    return min(keep, key=lambda n: (validation["T"][n]["_disliked"]["top_10"], settings[n][0], settings[n][2]))


def row(label: str, tables: dict[str, dict[str, Any]], name: str) -> str:
    cells = [label]
    for protocol in PROTOCOLS:
        cells.append(split_cell(protocol, tables[protocol][name]))
    return " | ".join(cells)


def summary(results: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """The setting chosen on the seeds' mean validation figures, and the mean test tables."""
    validation, test = mean_over_seeds(results, "validation"), mean_over_seeds(results, "test")
    best = chosen(validation, tolerance)
    for name in (NONE, best):
        print(row(f"mean of {len(results['seeds'])} seeds, validation, {name}", validation, name), flush=True)
        print(row(f"mean of {len(results['seeds'])} seeds, test, {name}", test, name), flush=True)
    return {"chosen_on_mean_validation": best, "setting": setting_names()[best], "mean_validation": validation,
            "mean_test": test}  # fmt: skip


def main(
    seed: Annotated[list[int], typer.Option()] = [42],  # noqa: B006  (typer reads the default)
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    tolerance: Annotated[float, typer.Option(help="Liked top-10 a chosen setting may cost, on T and on B.")] = 0.01,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/rating_demotion.json"),
) -> None:
    """Fit the default per seed on validation and on test ratings; choose on the first, report the second."""
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "settings": setting_names(), "seeds": {}}
    for s in seed:
        per_seed: dict[str, Any] = dict(per_split(s, data_dir, study_fold))
        per_seed["chosen"] = chosen(per_seed["validation"], tolerance)
        results["seeds"][str(s)] = per_seed
        for name in (NONE, per_seed["chosen"]):
            print(row(f"seed {s}, test, {name}", per_seed["test"], name), flush=True)
    write_study(out, results, started, functools.partial(summary, tolerance=tolerance))


if __name__ == "__main__":
    typer.run(main)
