"""What the rating benchmarks share (rating_channel.py, rating_demotion.py, rating_fold_in.py): the default
fitted on each split and protocol fold of a seed, figures averaged over seeds, a printed row's cells, and the
results file written with its run time and summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.results_file import write_results
from training.config import TrainConfig
from training.folds import Fold, prepare

Study = TypeVar("Study")
SPLITS = ("validation", "test")  # choose on the first, carved from training; report on the second


def per_split(
    seed: int, data_dir: Path, study: Callable[[Fold, TrainConfig, str], Study]
) -> dict[str, dict[str, Study]]:
    """{split: {"B" | "T": study(fold, config, protocol)}}: protocols B (random split) and T (temporal)."""
    out: dict[str, dict[str, Study]] = {}
    for split in SPLITS:
        config = TrainConfig(seed=seed, refit=False, evaluate_on=split)
        prepared = prepare(config, data_dir)
        out[split] = {}
        for protocol, fold in {"B": prepared.random, "T": prepared.temporal}.items():
            assert fold is not None
            out[split][protocol] = study(fold, config, protocol)
    return out


def mean_over_seeds(results: dict[str, Any], split: str) -> Any:
    """`results["seeds"][seed][split]` averaged over the seeds: the same nesting, each number the seeds' mean."""
    return _mean([per_seed[split] for per_seed in results["seeds"].values()])


def _mean(trees: list[Any]) -> Any:
    if isinstance(trees[0], dict):
        return {key: _mean([tree[key] for tree in trees]) for key in trees[0]}
    return float(np.mean(trees))


def split_cell(protocol: str, tables: dict[str, Any]) -> str:
    """One protocol's top-10 / top-100 over all, liked and disliked held-out ratings, for a printed row;
    `tables` holds them under "_all", "_liked" and "_disliked"."""
    return " ".join(
        f"{label} {tables[key]['top_10']:.3f}/{tables[key]['top_100']:.3f}"
        for label, key in ((f"{protocol} all", "_all"), ("liked", "_liked"), ("disliked", "_disliked"))
    )


def write_study(
    out: Path, results: dict[str, Any], started: float, summarise: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Stamp `results` with the seconds since `started` and `summarise(results)`, write them to `out`, say where."""
    results["seconds"] = round(time.time() - started, 1)
    results["summary"] = summarise(results)
    write_results(out, results)
    print(f"wrote {out} ({results['seconds']} s)")
