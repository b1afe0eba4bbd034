"""Benchmark: how long a hot swap stalls the server's event loop.

Loads MODELS_DIR/CURRENT with the service's Registry, then swaps between it and a copy of itself N times
while a 1 ms ticker runs on the same event loop; the longest gap between ticks is the longest stall a
request could have seen. Writes benchmarks/results/swap_stall.json.

    python benchmarks/swap_stall.py --models-dir models [--swaps 8]
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

import service  # noqa: F401  (TensorFlow and BLAS environment before TensorFlow loads)
from benchmarks.machine import machine
from service.artifacts import configure_tensorflow
from service.metrics import Metrics
from service.registry import Registry, freeze_runtime


async def measure(models_dir: Path, swaps: int) -> dict[str, float]:
    configure_tensorflow(1)
    freeze_runtime()
    registry = Registry(models_dir, 64, Metrics(), min_index_recall=0.8)
    await registry.sync()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    for i in range(swaps):
        await registry.pin("copy" if i % 2 == 0 else "original")
    done.set()
    await task
    gaps.sort()
    return {
        "swaps": swaps,
        "seconds": round(time.perf_counter() - started, 2),
        "max_stall_ms": round(gaps[-1] * 1000, 1),
        "p99_stall_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 2),
        "ticks": len(gaps),
    }


def main(
    models_dir: Annotated[Path, typer.Option(help="A models dir whose CURRENT names a version.")] = Path("models"),
    swaps: Annotated[int, typer.Option(min=2)] = 8,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/swap_stall.json"),
) -> None:
    version = (models_dir / "CURRENT").read_text().strip()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        shutil.copytree(models_dir / version, root / "original")
        shutil.copytree(models_dir / version, root / "copy")
        (root / "CURRENT").write_text("original\n")
        figures = asyncio.run(measure(root, swaps))
    print(json.dumps(figures))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"version": version, "machine": machine(), **figures}, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
