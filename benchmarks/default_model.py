"""Benchmark: the default configuration, exactly as `python -m training train` runs it, on the real MovieLens-100K.

Trains, scores protocols A and B (random 80/20 split) and T (latest 20% by time, each asked at its time with
the user's history), refits on every rating for serving, and exports a version, per seed. Writes the model's
and most-popular's tables, wall time of the whole run and of each fit, and peak memory to
benchmarks/results/default_model.json.

    python benchmarks/default_model.py [--seed 42 --seed 7 --seed 1] [--data-dir data] [--override FIELD=VALUE]
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.machine import machine
from training.config import TrainConfig
from training.fetch import fetch
from training.train import train_versions


def main(
    seed: Annotated[list[int] | None, typer.Option(help="Seeds to run (split, shuffling, initialisation).")] = None,
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path, typer.Option(help="Results file.")] = Path("benchmarks/results/default_model.json"),
    models_dir: Annotated[Path, typer.Option(help="Scratch folder for the versions.")] = Path("benchmarks/out/models"),
    override: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=VALUE: a TrainConfig field set otherwise (JSON value), e.g. history_min_rating=0."),
    ] = None,
) -> None:
    fetch("ml-100k", data_dir, log=lambda m: print(m, file=sys.stderr))
    changed = {key: json.loads(value) for key, _, value in (item.partition("=") for item in override or [])}
    runs = []
    for value in seed or [42]:
        config = TrainConfig(**changed, seed=value)
        started = time.perf_counter()
        version = train_versions([config], data_dir, models_dir, progress=False)[0]
        metrics = version.metrics
        runs.append(
            {
                "seed": value,
                "model": metrics.model,
                "most_popular": metrics.most_popular,
                "test_size_ab": metrics.test_size,
                "test_size_t": metrics.temporal.test_size if metrics.temporal else None,
                "wall_seconds": round(time.perf_counter() - started, 1),
                "scored_fit_seconds": round(version.training_log["train_seconds"], 1),
                "refit_seconds": round(version.training_log.get("refit_seconds", 0.0), 1),
                "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
        row = runs[-1]
        print(
            f"seed {value}: " + "  ".join(
                f"{p} top-10 {metrics.model[p]['top_10']:.3f} top-100 {metrics.model[p]['top_100']:.3f}"
                for p in ("A", "B", "T")
            ) + f"  ({row['wall_seconds']} s)",
            flush=True,
        )  # fmt: skip
    results = {
        "benchmark": "default configuration on ML-100K: protocols A, B (random 80/20) and T (latest 20%)",
        "config": TrainConfig(**changed).model_dump(mode="json", exclude={"seed"}),
        "overrides": changed,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
