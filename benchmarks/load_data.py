"""Benchmark: wall time and peak memory of loading an ML-25M-sized MovieLens CSV set.

Writes a synthetic ratings.csv/movies.csv in the GroupLens CSV layout with ML-25M's shape (training/synth.py:
25,000,000 ratings, 162,541 users, 62,423 movies; real MovieLens may not be redistributed or downloaded here),
loads it with training.data.load_movielens in a fresh child process, and records that process's wall time and
peak RSS in benchmarks/results/load_data.json.

    python benchmarks/load_data.py [--ratings 25000000] [--work /tmp/ml-25m-synth]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from training.synth import SynthSpec, write_synth

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import time
from pathlib import Path
from training.data import load_movielens
started = time.perf_counter()
data = load_movielens(Path({root!r}), "ml-25m")
print(len(data.ratings), len(data.movies), time.perf_counter() - started)
"""


def main(
    ratings: Annotated[int, typer.Option(help="Number of ratings (ML-25M has 25,000,095).")] = 25_000_000,
    work: Annotated[Path, typer.Option(help="Scratch folder for the synthetic files.")] = Path("/tmp/ml-25m-synth"),
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results"),
) -> None:
    target = work / "ml-25m"
    if not (target / "ratings.csv").is_file() or sum(1 for _ in (target / "ratings.csv").open()) != ratings + 1:
        write_synth(SynthSpec(users=162_541, movies=62_423, ratings=ratings), target)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(work))], capture_output=True, text=True, env=env, check=True
    )
    wall = time.perf_counter() - started
    rows, num_movies, load_seconds = child.stdout.split()
    result = {
        "benchmark": "load_movielens on an ML-25M-sized GroupLens CSV set (training/synth.py, seed 0)",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "ratings_csv_bytes": (target / "ratings.csv").stat().st_size,
        "ratings": int(rows),
        "movies": int(num_movies),
        "load_seconds": round(float(load_seconds), 2),
        "child_wall_seconds_with_imports": round(wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "load_data.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    typer.run(main)
