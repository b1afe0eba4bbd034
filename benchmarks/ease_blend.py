"""Benchmark: the model's scores blended with EASE's, on protocols B and T. A probe for issue 20, not served.

Protocol T is where the default trails EASE (0.158 against 0.185 at top-10 on test). If the two make
different mistakes, a blend shows it: each query's score is
  model score / its spread + alpha x EASE score / its spread,
the spread being the standard deviation of that query's scores over the catalogue, so alpha weighs two
scales alike. It is still a dot product (the query [q / s_model, alpha h / s_ease] against each movie's
[candidate embedding, EASE column]), so the service's exclusions and popularity fallback apply unchanged
(training.evaluate.model_ranks), but the movie vectors would be as wide as the catalogue. EASE uses lambda
1000 and a position decay (benchmarks/classical_baselines.py's validation choice under T is 0.9; under B,
1). alpha is chosen on T's validation ratings and scored once on the test ratings. Writes
benchmarks/results/ease_blend_seed<S>_decay_<D>.json.

    python benchmarks/ease_blend.py [--seed 42] [--ease-decay 0.9] [--rank 128] [--alpha 0 --alpha 0.5 ...]
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
from benchmarks.classical_baselines import ease, interactions, weighted_history
from benchmarks.machine import machine
from training.config import TrainConfig
from training.evaluate import accuracy_table, model_ranks
from training.fit import fit
from training.folds import Fold, prepare

EASE_LAMBDA = 1000.0


def blended_ranks(
    fold: Fold, queries: np.ndarray, candidates: np.ndarray, alpha: float, decay: float, rank: int = 0
) -> np.ndarray:
    """Ranks of the held-out movies under model + alpha x EASE, each scaled by its per-query spread; with
    `rank`, EASE's weights are their best rank-`rank` approximation (truncated SVD)."""
    assert fold.held_out is not None
    num_movies = len(candidates)
    weights = ease(interactions(fold.known, num_movies), EASE_LAMBDA)
    if rank:
        left, values, right = np.linalg.svd(weights.astype(np.float64), full_matrices=False)
        weights = ((left[:, :rank] * values[:rank]) @ right[:rank]).astype(np.float32)
    history = weighted_history(fold, num_movies, decay)
    model_spread = np.maximum((queries @ candidates.T).std(axis=1, keepdims=True), 1e-12)
    ease_spread = np.maximum((history @ weights).std(axis=1, keepdims=True), 1e-12)
    blended_queries = np.concatenate([queries / model_spread, alpha * history / ease_spread], axis=1)
    blended_candidates = np.concatenate([candidates, weights.T], axis=1)
    return model_ranks(
        blended_queries.astype(np.float32), blended_candidates.astype(np.float32), fold.popularity, fold.held_out, True
    )


def main(
    seed: Annotated[int, typer.Option()] = 42,
    alpha: Annotated[list[float] | None, typer.Option(help="EASE's weight in the blend (0: the model alone).")] = None,
    ease_decay: Annotated[float, typer.Option(help="EASE's history weight per position (T's choice: 0.9).")] = 0.9,
    rank: Annotated[int, typer.Option(help="EASE's weights at this rank (0: full), as towers could hold them.")] = 0,
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path | None, typer.Option()] = None,
) -> None:
    alphas = alpha or [0.0, 0.25, 0.5, 1.0, 2.0]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seed": seed,
    }
    for evaluate_on in ("validation", "test"):
        config = TrainConfig(seed=seed, refit=False, evaluate_on=evaluate_on)  # type: ignore[arg-type]
        prepared = prepare(config, data_dir)
        tried = alphas if evaluate_on == "validation" else sorted({0.0, result["chosen_alpha"]})
        rows: dict[str, Any] = {}
        for protocol, fold in (("B", prepared.random), ("T", prepared.temporal)):
            assert fold is not None
            run = fit(config, fold, progress=False)
            assert run.test_query_embeddings is not None
            for a in tried:
                table = accuracy_table(
                    blended_ranks(fold, run.test_query_embeddings, run.candidate_embeddings, a, ease_decay, rank)
                )
                rows[f"{protocol} alpha_{a:g}"] = {
                    "top_10": round(table["top_10"], 4),
                    "top_100": round(table["top_100"], 4),
                }
                print(evaluate_on, protocol, a, rows[f"{protocol} alpha_{a:g}"], flush=True)
        result[evaluate_on] = rows
        if evaluate_on == "validation":
            result["chosen_alpha"] = max(alphas, key=lambda a: rows[f"T alpha_{a:g}"]["top_10"])
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    suffix = f"_rank_{rank}" if rank else ""
    target = out or Path(f"benchmarks/results/ease_blend_seed{seed}_decay_{ease_decay:g}{suffix}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
