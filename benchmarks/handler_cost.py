"""The CPU one GET /recommend costs the server's event loop, without HTTP: the handler alone, in one process.

Under load (benchmarks/load_recommend.py) uvicorn, wrk and the host's drift are in every figure; this isolates
what the service's own code costs a request, by kind: a known user at now (what most traffic asks) and at a
moment inside ML-100K (every input computed afresh). Each request is timed with `time.thread_time_ns` of the
event loop's thread, so the impression writer's thread is not counted; the median and the mean are reported.

    python benchmarks/handler_cost.py --models-dir models [--repeats 4] [--out benchmarks/results/handler_cost.json]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine
from benchmarks.results_file import write_results

TIMESTAMP = 879024327  # inside ML-100K's rating period, as benchmarks/load_recommend.py asks


async def measure(repeats: int, users: int) -> dict[str, dict[str, float]]:
    # Imported here, after main() set the environment (OpenBLAS on one thread before NumPy loads).
    import numpy as np
    from starlette.datastructures import QueryParams

    from service.app import create_app
    from service.routes_recommend import answer_recommend_get

    app = create_app(requests_in_flight=lambda: 1)  # one request at a time: computed at once, no batching
    async with app.router.lifespan_context(app):
        state = app.state.service
        while state.registry.current is None:
            await asyncio.sleep(0.2)
        ids = list(state.registry.require().user_rows)[:users]
        kinds = {
            "known user at now": [QueryParams(f"user_id={u}&k=10") for u in ids],
            f"known user at {TIMESTAMP}": [QueryParams(f"user_id={u}&k=10&timestamp={TIMESTAMP}") for u in ids],
        }
        for queries in kinds.values():  # warm-up, discarded
            for query in queries[:100]:
                await answer_recommend_get(state, query)
        spent: dict[str, list[int]] = {kind: [] for kind in kinds}
        for _ in range(repeats):
            for kind, queries in kinds.items():
                for query in queries:
                    started = time.thread_time_ns()
                    await answer_recommend_get(state, query)
                    spent[kind].append(time.thread_time_ns() - started)
    return {
        kind: {"requests": len(ns), "median_us": float(np.median(ns)) / 1e3, "mean_us": float(np.mean(ns)) / 1e3}
        for kind, ns in spent.items()
    }


def main(
    models_dir: Annotated[Path, typer.Option(help="A models dir whose CURRENT is an ML-100K version")] = Path("models"),
    repeats: Annotated[int, typer.Option(help="Passes over the users, per kind")] = 4,
    users: Annotated[int, typer.Option(help="Known users asked, in the version's order")] = 500,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/handler_cost.json"),
) -> None:
    """Time the handler per request kind and write the medians."""
    with tempfile.TemporaryDirectory(prefix="handler_cost_") as tmp:
        os.environ |= {
            "RECSYS_MODELS_DIR": str(models_dir.resolve()),
            "RECSYS_RATINGS_URL": f"sqlite:///{tmp}/ratings.db",  # a throwaway store, never data/
            "RECSYS_POLL_SECONDS": "0",
            "RECSYS_LOG_LEVEL": "warning",
            "OPENBLAS_NUM_THREADS": "1",  # as the server runs (service/__init__.py)
        }
        figures = asyncio.run(measure(repeats, users))
    version = (models_dir / "CURRENT").read_text().strip()
    result: dict[str, Any] = {"machine": machine(), "version": version, "kinds": figures}
    for kind, row in figures.items():
        print(f"{kind}: median {row['median_us']:.0f} µs, mean {row['mean_us']:.0f} µs ({row['requests']} requests)")
    write_results(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
