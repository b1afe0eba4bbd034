"""Benchmark: time and peak memory of `python -m training synth` at 1M, 10M and 25M ratings.

Each size takes the shape of the GroupLens set of that size (ML-1M, ML-10M, ML-25M users and movies) and runs
in a fresh child process, so its peak RSS is its own. Records generation seconds, the child's wall time with
imports, peak RSS, the files' sizes and how MovieLens-like the popularity came out (item Gini over rated
movies, the top 10% of movies' share, the most rated movie's share of users) in
benchmarks/results/synth_data.json; a run updates only the sizes it measured.

    python benchmarks/synth_data.py [--ratings 1000000 --ratings 10000000 --ratings 25000000] [--work /tmp/synth-bench]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

from benchmarks.machine import machine

ROOT = Path(__file__).resolve().parents[1]
# GroupLens shapes: (users, movies in movies.csv) of ML-1M, ML-10M and ML-25M.
SHAPES = {1_000_000: (6_040, 3_883), 10_000_000: (69_878, 10_681), 25_000_000: (162_541, 62_423)}
CHILD = """
import json, resource, time
from pathlib import Path
import numpy as np
from training.synth import SynthSpec, write_synth
started = time.perf_counter()
result = write_synth(SynthSpec(users={users}, movies={movies}, ratings={ratings}, seed=0), Path({out!r}))
seconds = time.perf_counter() - started
counts = np.sort(result.movie_counts)
rated = counts[counts > 0]
gini = float((2 * np.arange(1, len(rated) + 1) - len(rated) - 1) @ rated / (len(rated) * rated.sum()))
print(json.dumps({{
    "generate_seconds": round(seconds, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "rated_movies": int(len(rated)),
    "item_gini": round(gini, 3),
    "top_10pct_movies_share": round(float(counts[::-1][: len(counts) // 10].sum() / counts.sum()), 3),
    "most_rated_movie_share_of_users": round(float(counts[-1] / {users}), 3),
    "max_ratings_per_user": int(result.planted.counts.max()),
}}))
"""


def measure(ratings: int, work: Path, keep: bool) -> dict[str, object]:
    """Generates one size in a child process and returns its row of the results table."""
    users, movies = SHAPES.get(ratings, (max(1, ratings // 154), max(2, ratings // 400)))
    out = work / f"synth-{ratings}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = CHILD.format(users=users, movies=movies, ratings=ratings, out=str(out))
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    row: dict[str, object] = {"ratings": ratings, "users": users, "movies": movies}
    row |= json.loads(child.stdout.strip().splitlines()[-1])
    row["child_wall_seconds_with_imports"] = round(time.perf_counter() - started, 2)
    row["ratings_csv_bytes"] = (out / "ratings.csv").stat().st_size
    row["movies_csv_bytes"] = (out / "movies.csv").stat().st_size
    if not keep:
        for name in ("ratings.csv", "movies.csv"):
            (out / name).unlink()
        out.rmdir()
    return row


def main(
    ratings: Annotated[list[int] | None, typer.Option(help="Sizes to generate (default 1M, 10M and 25M).")] = None,
    work: Annotated[Path, typer.Option(help="Scratch folder for the generated files.")] = Path("/tmp/synth-bench"),
    keep: Annotated[bool, typer.Option(help="Keep the generated files (e.g. for benchmarks/load_data.py).")] = False,
    out: Annotated[Path, typer.Option(help="Results file.")] = Path("benchmarks/results/synth_data.json"),
) -> None:
    work.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    runs = {row["ratings"]: row for row in previous.get("runs", [])}
    for size in ratings or sorted(SHAPES):
        row = measure(size, work, keep)
        row["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        runs[size] = row
        print(json.dumps(row), flush=True)
    results = {
        "benchmark": "python -m training synth at GroupLens shapes (seed 0), each size in a fresh process",
        "machine": machine(),
        "runs": [runs[size] for size in sorted(runs)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
