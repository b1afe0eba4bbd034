"""Benchmark: does the time since each rating say more than its position? A probe for issue 20's time-gap lever.

The query tower weighs history movies by position only (newest first). On MovieLens, a user rates many
movies in one sitting, so position 5 may be seconds old or a year old. Before building time-gap inputs into
the tower, this asks the closed-form item-item models (EASE and item-kNN, benchmarks/classical_baselines.py)
on protocol T's validation ratings (each family's best setting, with and without time, then scored once on
the test ratings): each query's history weighted by position (decay ** age in positions,
as classical_baselines), and by time (2 ** (-seconds before the newest rating / half-life)) or cut to the ratings
within a window of the newest one. If time adds
nothing there, a time-gap feature is unlikely to add much to the model. Writes
benchmarks/results/time_decay.json.

    python benchmarks/time_decay.py [--seed 42]
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
from benchmarks.classical_baselines import baselines
from benchmarks.machine import machine
from contract.user_ratings import span_pairs
from training.config import TrainConfig
from training.evaluate import accuracy_table, model_ranks
from training.folds import Fold, prepare

POSITION_DECAYS = (1.0, 0.9, 0.8)
HALF_LIVES_DAYS = (None, 1 / 720, 1 / 144, 1 / 24, 1 / 6, 1.0, 7.0, 30.0)  # None: no time decay; 2 min to 30 days
WINDOWS_DAYS = (1 / 144, 1 / 24, 1 / 6, 1.0)  # only the ratings within this of the newest: 10 minutes to a day


def weighted(
    fold: Fold, num_movies: int, decay: float, half_life_days: float | None, window_days: float | None = None
) -> np.ndarray:
    """float32 [queries, movies]: each query's known movies weighted by decay ** (age in positions) and, with a
    half-life, by 2 ** (-(seconds before the query's newest known rating) / half-life); with a window, only
    the movies rated within it of that newest rating."""
    held = fold.held_out
    assert held is not None
    rows = np.zeros((len(held), num_movies), dtype=np.float32)
    positions = np.arange(len(held.known.movie_rows))
    query, index = span_pairs(positions, held.exclude_start, held.exclude_end)
    weight = decay ** (held.exclude_end[query] - 1 - index).astype(np.float64)
    # Ages from the query's newest known rating, not from the query's time: from the query's time a history
    # older than a few hundred half-lives underflowed to all zeros, every score tied at 0, and a tie counts as
    # a hit (fewer than k movies score strictly higher), which flattered short half-lives.
    seconds = held.known.timestamps[held.exclude_end[query] - 1] - held.known.timestamps[index]
    if half_life_days is not None:
        weight = weight * np.exp2(-seconds / (half_life_days * 86_400))
    if window_days is not None:
        weight = weight * (seconds <= window_days * 86_400)
    np.add.at(rows, (query, held.known.movie_rows[index]), weight.astype(np.float32))
    return rows


def main(
    seed: Annotated[int, typer.Option()] = 42,
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/time_decay.json"),
) -> None:
    started = time.perf_counter()
    rows: dict[str, Any] = {}
    settings: dict[str, tuple[str, float, float | None, float | None]] = {}
    for decay in POSITION_DECAYS:
        for half_life in HALF_LIVES_DAYS:
            label = f"position_decay_{decay:g} half_life_{'none' if half_life is None else f'{half_life * 24:g}h'}"
            settings[label] = ("", decay, half_life, None)
        for window in WINDOWS_DAYS:
            settings[f"position_decay_{decay:g} window_{window * 24:g}h"] = ("", decay, None, window)
    validation = _scored(seed, data_dir, "validation", settings)
    for key, table in validation.items():
        print(key, table, flush=True)
    # Each family's best setting on validation (top-10), with and without the time decay, scored on test once.
    chosen: dict[str, tuple[str, float, float | None, float | None]] = {}
    for family in {key.split(" ")[0] for key in validation}:
        for kind in ("half_life_none", "half_life_", "window_"):
            keys = [k for k in validation if k.startswith(family + " ") and kind in k]
            if kind == "half_life_":
                keys = [k for k in keys if "half_life_none" not in k]
            best = max(keys, key=lambda k: validation[k]["top_10"])
            chosen[best] = (family, *settings[best.split(" ", 1)[1]][1:])
    test = _scored(seed, data_dir, "test", chosen)
    for key, table in test.items():
        print("test", key, table, flush=True)
    rows = {"validation": validation, "test_of_the_validation_choices": test}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seed": seed,
        "protocol": "T",
        **rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def _scored(
    seed: int, data_dir: Path, evaluate_on: str, settings: dict[str, tuple[str, float, float | None, float | None]]
) -> dict[str, dict[str, float]]:
    """{"<family> <label>": T top-10 and top-100} for every family (or only the named one) and setting."""
    config = TrainConfig(seed=seed, evaluate_on=evaluate_on, refit=False)  # type: ignore[arg-type]
    prepared = prepare(config, data_dir)
    fold = prepared.temporal
    assert fold is not None and fold.held_out is not None
    num_movies = len(prepared.data.movies)
    models = baselines(fold, num_movies)
    rows: dict[str, dict[str, float]] = {}
    for label, (family, decay, half_life, window) in settings.items():
        queries = weighted(fold, num_movies, decay, half_life, window)
        for name, weights in models.items():
            if family and name != family:
                continue
            table = accuracy_table(model_ranks(queries, weights.T, fold.popularity, fold.held_out, True))
            key = label if family else f"{name} {label}"
            rows[key] = {"top_10": round(table["top_10"], 4), "top_100": round(table["top_100"], 4)}
    return rows


if __name__ == "__main__":
    typer.run(main)
