"""Benchmark: the weight of the EASE prior in the item-item channel, chosen on validation ratings.

The towers train without the prior (`item_item_prior_in_training=False`) and it joins at inference, so one fit
per protocol serves every gain: the query's last `item_item_prior` columns are scaled after the fact, exactly
as a version exported with that gain would score (the channel is linear in its gain). Protocols T and B on
the validation ratings carved from training, each split by what the held-out rating says (liked >= 4 stars,
disliked <= 2), through the service's ranking code. The rule (issue 20, keeping issue 19's B): the gain with
the best mean T top-10 over the seeds among those whose mean B top-10 is within 0.005 of the model without
the prior. Writes benchmarks/results/ease_prior_gain.json.

    python benchmarks/ease_prior_gain.py [--seed 0 --seed 1 --seed 42] [--rank 128] [--min-rating 4]
                                         [--popularity P]
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
from benchmarks.machine import machine
from training.config import TrainConfig
from training.evaluate import model_ranks, split_tables
from training.fit import fit
from training.folds import prepare

GAINS = (0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
B_TOLERANCE = 0.005  # how much mean B top-10 the chosen gain may cost (one seed's noise is about this)


def gain_rows(seed: int, rank: int, min_rating: float, data_dir: Path, popularity: float = 0.0) -> list[dict[str, Any]]:
    """One row per protocol and gain: top-10/100 over all, liked and disliked held-out ratings."""
    config = TrainConfig(
        seed=seed,
        item_item_prior_min_rating=min_rating,
        item_item_prior_popularity=popularity,
        refit=False,
        evaluate_on="validation",
        item_item_prior=rank,
        item_item_prior_gain=1.0,
        item_item_prior_in_training=False,
    )
    prepared = prepare(config, data_dir)
    rows = []
    for protocol, fold in (("T", prepared.temporal), ("B", prepared.random)):
        assert fold is not None and fold.held_out is not None
        run = fit(config, fold, progress=False)
        assert run.test_query_embeddings is not None
        for gain in GAINS:
            queries = run.test_query_embeddings.copy()
            queries[:, -rank:] *= np.float32(gain)
            ranks = model_ranks(queries, run.candidate_embeddings, fold.popularity, fold.held_out, True)
            row: dict[str, Any] = {"seed": seed, "protocol": protocol, "gain": gain}
            for name, table in split_tables("all", ranks, fold.held_out.stars).items():
                label = name.removeprefix("all").removeprefix("_") or "all"
                row[f"{label}_top_10"], row[f"{label}_top_100"] = round(table["top_10"], 4), round(table["top_100"], 4)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds per protocol and gain, and the gain the rule picks."""

    def mean(protocol: str, gain: float, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["protocol"] == protocol and r["gain"] == gain]))

    means = {
        f"{protocol} gain_{gain:g}": {
            key: round(mean(protocol, gain, key), 4) for key in rows[0] if key.endswith(("top_10", "top_100"))
        }
        for protocol in ("T", "B")
        for gain in GAINS
    }
    floor = mean("B", 0.0, "all_top_10") - B_TOLERANCE
    allowed = [gain for gain in GAINS if mean("B", gain, "all_top_10") >= floor]
    return {"means": means, "chosen_gain": max(allowed, key=lambda gain: mean("T", gain, "all_top_10"))}


def main(
    seed: Annotated[list[int] | None, typer.Option(help="Seeds (default: 0, 1, 42).")] = None,
    rank: Annotated[int, typer.Option(help="The prior's rank.")] = 128,
    min_rating: Annotated[float, typer.Option(help="Stars a rating needs to enter EASE's matrix (0: all).")] = 0.0,
    popularity: Annotated[
        float, typer.Option(help="Divide each target's EASE weights by its rating count to this power.")
    ] = 0.0,
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path | None, typer.Option(help="Default: ease_prior_gain[_min_<stars>].json.")] = None,
) -> None:
    started = time.perf_counter()
    rows = [row for value in seed or [0, 1, 42] for row in gain_rows(value, rank, min_rating, data_dir, popularity)]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rank": rank,
        "min_rating": min_rating,
        "popularity": popularity,
        "b_tolerance": B_TOLERANCE,
        **choose(rows),
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = out or Path(f"benchmarks/results/ease_prior_gain{f'_min_{min_rating:g}' if min_rating else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"chosen_gain": result["chosen_gain"]}))


if __name__ == "__main__":
    typer.run(main)
