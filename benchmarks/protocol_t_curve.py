"""Benchmark: protocol T's validation curve of a training configuration, every 5 epochs, in one fit.

The temporal fold with `evaluate_on=validation` (its latest share of the training part held out; the test
ratings unseen), fit once per configuration with the held-out curve on: the curve's "B" (known movies excluded)
on that fold is protocol T. For choosing epochs and regularisation of a lever quickly (a third of a sweep row).
Overrides are JSON objects over quality_sweep.py's DEFAULT_1201 (the default). Appends one row per
configuration to benchmarks/results/protocol_t_curves.json.

    python benchmarks/protocol_t_curve.py '{"history_pooling": "attention", "epochs": 40}' ['{...}' ...]
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.machine import machine
from benchmarks.quality_sweep import BASE, DEFAULT_1201
from training.config import TrainConfig
from training.fit import fit
from training.folds import prepare

OUT = Path("benchmarks/results/protocol_t_curves.json")


def main(arguments: list[str], data_dir: Path = Path("data")) -> None:
    results = json.loads(OUT.read_text()) if OUT.is_file() else {"machine": machine(), "rows": []}
    for argument in arguments:
        overrides = json.loads(argument)
        config = TrainConfig(
            **{**BASE, **DEFAULT_1201, "eval_every": 5, **overrides}, refit=False, evaluate_on="validation"
        )
        fold = prepare(config, data_dir).temporal
        assert fold is not None
        started = time.perf_counter()
        log = fit(config, fold, progress=False, curve=True).training_log
        row = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "overrides": overrides,
            "epochs": log["held_out_epoch"],
            "T_top_10": [round(x, 4) for x in log["held_out_B_top_10"]],
            "T_top_100": [round(x, 4) for x in log["held_out_B_top_100"]],
            "wall_seconds": round(time.perf_counter() - started),
        }
        print(json.dumps(row), flush=True)
        results["rows"].append(row)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
