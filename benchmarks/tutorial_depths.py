"""Benchmark: the TFRS deep-retrieval tutorial protocol on the real MovieLens-100K, three tower depths.

`--preset tutorial` reproduces the tutorial (random 80/20 split, Adagrad 0.1, batch 2048, 300 epochs, no
sampling-bias correction) for [32], [64,32] and [128,64,32]; `--preset default` trains our default
configuration (30 epochs, logQ correction) on the same split. Writes protocol A/B accuracy, the most-popular
baseline, wall and CPU time per epoch, peak memory and the machine to
benchmarks/results/<preset>_depths.json, plus the validation-curve PNG.

    python benchmarks/tutorial_depths.py [--preset tutorial] [--epochs N] [--data-dir data]
"""

from __future__ import annotations

import json
import resource
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.machine import machine
from training.config import build_config
from training.fetch import fetch
from training.train import train_versions

DEPTHS = ((32,), (64, 32), (128, 64, 32))
PUBLISHED_TOP_100 = {"32": 0.27, "64,32": 0.29, "128,64,32": 0.26}


def main(
    preset: Annotated[str, typer.Option(help="tutorial (the published protocol) or default (ours)")] = "tutorial",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs (e.g. for a smoke run).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the training; 42 is the reference run.")] = 42,
    layers: Annotated[
        list[str] | None, typer.Option(help="Depths to train, e.g. 128,64,32 (default: all three).")
    ] = None,
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
    models_dir: Annotated[Path, typer.Option(help="Scratch folder for the exported versions.")] = Path(
        "benchmarks/out/models"
    ),
) -> None:
    fetch("ml-100k", data_dir, log=lambda m: print(m, file=sys.stderr))
    out.mkdir(parents=True, exist_ok=True)
    depths = [tuple(int(size) for size in text.split(",")) for text in layers] if layers else list(DEPTHS)
    base = None if preset == "default" else preset
    configs = [build_config(base, layers=depth, epochs=epochs, seed=seed) for depth in depths]
    name = f"{preset}_depths" + ("" if seed == 42 else f"_seed{seed}")
    results: dict[str, object] = {
        "benchmark": f"tfrs-deep-retrieval-tutorial, preset {preset}",
        "protocol": f"random 80/20 split (seed {seed}), top-k accuracy on the 20,000 held-out ratings",
        "config": configs[0].model_dump(mode="json", exclude={"layers"}),
        "dataset": "ml-100k (RecBole wheel copy of the GroupLens data)",
        "epochs": configs[0].epochs,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "published_top_100": PUBLISHED_TOP_100,
    }
    runs: list[dict[str, Any]] = []
    results["runs"] = runs
    for version in train_versions(configs, data_dir, models_dir):
        label = ",".join(map(str, version.config.layers))
        metrics, history = version.metrics, version.training_log
        runs.append(
            {
                "layers": label,
                "metrics": metrics.model_dump(),
                "top_100_A": metrics.model["A"]["top_100"],
                "published_top_100": PUBLISHED_TOP_100.get(label),
                "seconds_per_epoch": history["seconds_per_epoch"],
                "train_seconds": history["train_seconds"],
                "train_cpu_seconds": history["train_cpu_seconds"],
                "held_out_epoch": history["held_out_epoch"],
                "held_out_A_top_100": history["held_out_A_top_100"],
                "version": version.version_dir.name,
            }
        )
        print(f"[{label}] top-100 A={metrics.model['A']['top_100']:.4f} B={metrics.model['B']['top_100']:.4f} "
              f"({history['seconds_per_epoch']:.2f} s/epoch)", flush=True)  # fmt: skip
        (out / f"{name}.png").write_bytes((version.version_dir / "training_curve.png").read_bytes())
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({r["layers"]: r["top_100_A"] for r in runs}))


if __name__ == "__main__":
    typer.run(main)
