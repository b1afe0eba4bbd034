"""Chooses the rating term's weight (issue 19): how far may a predicted rating move each user's scores?

The towers learn which movie a user rates next, not how much they will like it: the default ranked a movie
the user would rate 1-2 stars nearly as high as one they would rate 4-5 (test, 3 seeds: T liked top-10 0.206,
disliked 0.133). The rating term (contract/rating_model.py) adds a user's predicted stars to every score,
moving it by `beta` of that user's own score spread:

- The towers are trained once per fold. Each variant's matrix factorisation is fit on the fold's stars.
  "item bias" has no factors: a movie's shrunk mean. "MF 16" has 16 factors, and the user is folded in
  from every rating they have.
- Each beta is scored with training's own served vectors and protocol tables, exclusions and the
  popularity fallback as served.

beta is chosen on validation ratings carved from training, then scored on the test ratings, per seed. The
rule: the largest beta whose T and B top-100 over all ratings stay within `--tolerance` of beta 0, issue 19's
"no more than 0.01 below", per seed and on the seeds' mean (the default's weight).

    python benchmarks/rating_channel.py --seed 42 --seed 7 --seed 1 [--data-dir data]
        [--out benchmarks/results/rating_channel.json]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.results_file import write_results
from benchmarks.seed_study import mean_over_seeds, per_split, split_cell, write_study
from training.config import TrainConfig
from training.evaluate import protocol_tables, served_vectors
from training.fit import fit
from training.folds import Fold
from training.rating_model import fit_rating_model

BETAS = (0.0, 0.1, 0.15, 0.2, 0.3, 0.5)
VARIANTS = {"item bias": (0, 5.0), "MF 16": (16, 10.0)}  # factors, ridge weight
PROTOCOLS = {"B": "random", "T": "temporal"}


def study_fold(fold: Fold, config: TrainConfig, protocol: str) -> dict[str, dict[str, Any]]:
    """{variant: {beta: tables}} for one fitted fold, beta 0 being the towers alone."""
    assert fold.held_out is not None
    run = fit(config, fold, progress=False)
    assert run.test_query_embeddings is not None
    out: dict[str, dict[str, Any]] = {}
    for variant, (factors, reg) in VARIANTS.items():
        model = fit_rating_model(fold.known, run.candidate_embeddings, factors, reg, 1.0, config.seed)
        assert model is not None
        out[variant] = {}
        for beta in BETAS:
            term = dataclasses.replace(model, weight=beta) if beta else None
            queries, candidates = served_vectors(
                term, run.test_query_embeddings, run.candidate_embeddings, fold.held_out
            )
            tables = protocol_tables(queries, candidates, fold.popularity, fold.held_out, {protocol: True})
            out[variant][str(beta)] = {name.removeprefix(protocol) or "_all": t for name, t in tables.items()}
    return out


def chosen_beta(validation: dict[str, dict[str, Any]], variant: str, tolerance: float) -> float:
    """The largest beta whose all-ratings top-100 stays within `tolerance` of beta 0 on every protocol."""
    ok = [
        beta
        for beta in BETAS
        if all(
            validation[p][variant]["0.0"]["_all"]["top_100"] - validation[p][variant][str(beta)]["_all"]["top_100"]
            <= tolerance
            for p in PROTOCOLS
        )
    ]
    return max(ok)


def row(label: str, tables: dict[str, Any], variant: str, beta: float) -> str:
    """One printed line: `label`, then each protocol's all / liked / disliked figures for the variant at beta."""
    cells = [label] + [split_cell(protocol, tables[protocol][variant][str(beta)]) for protocol in PROTOCOLS]
    return " | ".join(cells)


def summary(results: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """beta chosen by the rule on the seeds' mean validation figures, per variant, and the mean test tables."""
    validation, test = mean_over_seeds(results, "validation"), mean_over_seeds(results, "test")
    chosen = {v: chosen_beta(validation, v, tolerance) for v in VARIANTS}
    for variant, beta in chosen.items():
        for shown in sorted({0.0, beta, 0.5}):
            label = f"mean of {len(results['seeds'])} seeds {variant:9} beta {shown:<4}"
            print(row(label, test, variant, shown), flush=True)
    return {"chosen_on_mean_validation": chosen, "mean_validation": validation, "mean_test": test}


def main(
    seed: Annotated[list[int], typer.Option()] = [42],  # noqa: B006  (typer reads the default)
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    tolerance: Annotated[float, typer.Option(help="All-ratings top-100 a chosen beta may cost.")] = 0.01,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/rating_channel.json"),
    summarise: Annotated[bool, typer.Option(help="Only summarise the results already in --out.")] = False,
) -> None:
    """Fit the default per seed on validation and on test ratings; choose beta on the first, report the second."""
    if summarise:
        earlier = json.loads(out.read_text())
        earlier["summary"] = summary(earlier, tolerance)
        write_results(out, earlier)
        return
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "betas": BETAS, "variants": VARIANTS, "seeds": {}}
    for s in seed:
        per_seed: dict[str, Any] = dict(per_split(s, data_dir, study_fold))
        per_seed["chosen"] = {v: chosen_beta(per_seed["validation"], v, tolerance) for v in VARIANTS}
        results["seeds"][str(s)] = per_seed
        for variant, beta in per_seed["chosen"].items():
            for shown in sorted({0.0, beta, 0.5}):
                print(row(f"seed {s} {variant:9} beta {shown:<4}", per_seed["test"], variant, shown), flush=True)
    write_study(out, results, started, functools.partial(summary, tolerance=tolerance))


if __name__ == "__main__":
    typer.run(main)
