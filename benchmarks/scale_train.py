"""Benchmark: the whole `train` at 1M, 10M, 25M and 32M ratings, stage by stage, and the input pipeline's speed.

For each size, a deterministic synthetic MovieLens of that GroupLens shape (training/synth.py, seed 0) is
written once under --work; then, each in a fresh process:
- `train_versions` on it with the default configuration but `--epochs` (1: every stage runs once at full
  size), recording each stage's wall time, RSS and peak RSS (training/stages.py) and the fits' examples/s;
- the input pipeline alone (training.dataset.ratings_dataset, histories included) over one epoch of the
  protocol-A/B training ratings at the same batch, then 50 training steps fed by it against 50 fed by one
  batch held in memory: the difference is the share of step time spent waiting on input.
Rows go to benchmarks/results/scale_train.json, beside the runs of other sizes and settings already there.

    python benchmarks/scale_train.py [--size 1m --size 10m --size 25m | --size 32m] [--epochs 1] [--batch-size 4096]
                                     [--scored-fit-only] [--input-only] [--no-input-pipeline]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # GroupLens's users and movies at each size
    "1m": (6_040, 3_883, 1_000_209),
    "10m": (69_878, 10_681, 10_000_054),
    "25m": (162_541, 62_423, 25_000_095),
    "32m": (200_948, 87_585, 32_000_204),
}
TRAIN = """
import json, logging, sys, tempfile
from pathlib import Path
import training
from training.config import TrainConfig
from training.stages import StageLog
from training.train import train_versions
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
config = TrainConfig(**json.loads(sys.argv[1]))
log = StageLog()
with tempfile.TemporaryDirectory() as models:
    [version] = train_versions([config], Path(sys.argv[2]), Path(models), progress=False, stages=log)
print(json.dumps({"stages": log.as_rows(), "history": {k: v for k, v in version.training_log.items()
      if not isinstance(v, list)}, "metrics": version.metrics.model_dump()}))
"""
INPUT = """
import json, sys, time
from pathlib import Path
import training
from training.config import TrainConfig
from training.dataset import ratings_dataset
from training.fit import fit_vocabularies
from training.folds import prepare
config = TrainConfig(**json.loads(sys.argv[1]))
fold = prepare(config.model_copy(update={"evaluate_temporal": False}), Path(sys.argv[2])).random
started = time.perf_counter()
vocab = fit_vocabularies(config, fold)
dataset = ratings_dataset(fold.data, fold.train, vocab, config.batch_size, known=fold.known,
                          history_length=config.history_length, shuffle_seed=config.seed,
                          user_dropout=config.user_dropout)
built = time.perf_counter()
examples = sum(int(batch["timestamp"].shape[0]) for batch in dataset)
done = time.perf_counter()
# Input wait: the same number of training steps fed by the live pipeline, then by one batch held in memory.
import tensorflow as tf
from training.model import build_model
model, _, _ = build_model(vocab, config)
step = model.make_train_function()
live = iter(dataset)
for _ in range(5):
    step(live)  # trace, and fill the shuffle buffer
steps = 50
started_live = time.perf_counter()
for _ in range(steps):
    step(live)
live_seconds = time.perf_counter() - started_live
held = iter(tf.data.Dataset.from_tensors(next(live)).repeat())
step(held)
started_held = time.perf_counter()
for _ in range(steps):
    step(held)
held_seconds = time.perf_counter() - started_held
print(json.dumps({"build_seconds": built - started, "epoch_seconds": done - built,
                  "input_examples_per_second": examples / (done - built),
                  "train_examples_per_second_live": steps * config.batch_size / live_seconds,
                  "train_examples_per_second_held": steps * config.batch_size / held_seconds,
                  "input_wait_share": max(0.0, 1 - held_seconds / live_seconds)}))
"""


def _child(code: str, config: dict[str, object], data_dir: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config), str(data_dir)], capture_output=True, text=True, env=env
    )
    if run.returncode != 0:
        raise SystemExit(f"child failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def _ensure_data(work: Path, size: str) -> Path:
    """The synthetic set of that size under work/synth-<size>/, written once (a marker says it is complete)."""
    from training.synth import SynthSpec, write_synth

    users, movies, ratings = SHAPES[size]
    target = work / f"synth-{size}"
    marker = target / "spec.json"
    spec = SynthSpec(users=users, movies=movies, ratings=ratings)
    if not marker.is_file() or json.loads(marker.read_text()) != [users, movies, ratings]:
        write_synth(spec, target)
        marker.write_text(json.dumps([users, movies, ratings]))
    return target


def _merged(out: Path, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The results file's earlier runs with these replacing any of the same size and settings.

    One size takes minutes to an hour here, so sizes are run one at a time and the file accumulates them.
    """

    def key(row: dict[str, object]) -> tuple[object, ...]:
        return tuple(row.get(name) for name in ("size", "epochs", "batch_size", "evaluate_temporal", "refit"))

    earlier = json.loads(out.read_text())["runs"] if out.is_file() else []
    replaced = {key(row) for row in rows}
    kept = [row for row in earlier if key(row) not in replaced]
    for row in rows:  # an --input-only run keeps the training figures measured before it
        before = next((old for old in earlier if key(old) == key(row) and "train" in old), None)
        if "train" not in row and before is not None:
            row["train"], row["train_measured_at"] = before["train"], before.get("measured_at")
    return sorted(kept + rows, key=lambda row: (int(str(row["ratings"])), str(row.get("refit"))))


def main(
    size: Annotated[list[str], typer.Option(help="1m, 10m, 25m, 32m (repeatable).")] = ["1m", "10m", "25m"],  # noqa: B006
    epochs: Annotated[int, typer.Option(help="Epochs per fit; 1 runs every stage once at full size.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Ratings per step (large, as at scale).")] = 4096,
    work: Annotated[Path, typer.Option(help="Scratch folder for the synthetic sets.")] = Path("/tmp/scale-synth"),
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/scale_train.json"),
    input_only: Annotated[bool, typer.Option(help="Only the input-pipeline measurement.")] = False,
    input_pipeline: Annotated[
        bool, typer.Option(help="Also measure the input pipeline (--no-input-pipeline: the training only).")
    ] = True,
    scored_fit_only: Annotated[
        bool, typer.Option(help="One fit (A/B) and export: no protocol-T fit, no refit (each is another fit).")
    ] = False,
) -> None:
    rows = []
    for name in size:
        if name not in SHAPES:
            raise typer.BadParameter(f"--size must be one of {sorted(SHAPES)}, got {name!r}")
        data_dir = _ensure_data(work, name)
        config: dict[str, object] = {"dataset": data_dir.name, "epochs": epochs, "batch_size": batch_size}
        if scored_fit_only:
            config.update(evaluate_temporal=False, refit=False)
        users, movies, ratings = SHAPES[name]
        row: dict[str, object] = {"size": name, "ratings": ratings, "users": users, "movies": movies, **config}
        row["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        if not input_only:
            row["train"] = _child(TRAIN, config, work)
        if input_pipeline or input_only:
            row["input_pipeline"] = _child(INPUT, config, work)
        rows.append(row)
        print(json.dumps(row, indent=2), flush=True)
    result = {
        "benchmark": "python -m training train on synthetic GroupLens-shaped data, each stage's time and memory",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": _merged(out, rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
