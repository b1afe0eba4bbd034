"""What the rating benchmarks share (rating_channel.py, rating_demotion.py): the default fitted on each split and
protocol fold of a seed, and figures averaged over seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

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
