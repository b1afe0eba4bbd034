"""Benchmark: calibrated lists against the score order, on protocols B and T. Measured, not served.

A calibrated list keeps the genre proportions of the user's history (Steck, "Calibrated Recommendations",
RecSys 2018). Why it was tried: the query tower weighs the newest ratings most, so a person who rated five
horror films and then four Disney films gets ten children's films and no horror. The list is built greedily
from the model's best `pool` movies: each slot takes the movie that maximises
  (1 - weight) x its score, scaled to [0, 1] over the pool + weight x sum over genres g of p(g) log q~(g),
p the history's genre distribution (each movie's genres at equal shares, averaged), q~ = (1 - ALPHA) q +
ALPHA p, q the list's with that movie: the negative of KL(p || q~) up to a constant. Weight 0 is the score
order. Greedy choices do not depend on k, so a calibrated top-10 is the first 10 of a calibrated top-100.
Why it is not served: docs/results.md (MovieLens's genre tags are too coarse; lists a person would frown at).

Fits the default configuration once per protocol (on validation ratings carved from training by default;
`--evaluate-on test` for the test ratings), then answers every held-out rating as the service would
(exclusions, the popularity fallback for a query with nothing to read) and re-orders each personalised
answer's best `pool` movies with contract.calibration at each weight. Reports, per weight, top-10 and
top-100 (overall, liked, disliked) and the miscalibration of the top 10: the mean KL(p || q~) between the
history's genres and the list's (Steck 2018). Weight 0 is the model as served today. Writes
benchmarks/results/calibration_<evaluate_on>_seed<S>.json.

    python benchmarks/calibration.py [--seed 42] [--weight 0 --weight 0.1 ...] [--evaluate-on validation]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import typer

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.machine import machine
from contract.user_ratings import PAD, span_pairs
from training.config import TrainConfig
from training.evaluate import DISLIKED, LIKED, popularity_scores
from training.fit import fit
from training.folds import Fold, prepare
from training.model import genre_names

ALPHA = 0.01  # Steck's smoothing: q~ never 0 where p is not, so the log is finite


def genre_shares(movie_genres: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """float32 [num_movies, len(names)]: each movie's genres at equal shares (a movie without genres: zeros)."""
    column = {name: j for j, name in enumerate(names)}
    shares = np.zeros((len(movie_genres), len(names)), dtype=np.float32)
    for row, genres in enumerate(movie_genres):
        known = [column[g] for g in genres if g in column]
        if known:
            shares[row, known] = 1.0 / len(known)
    return shares


def history_distribution(shares: np.ndarray, history_rows: np.ndarray) -> np.ndarray:
    """float32 [batch, G]: the genre distribution of each history (int [batch, H] movie rows, PAD where empty),
    every history movie counting once; zeros for a history without genres."""
    rows = np.asarray(history_rows, dtype=np.int64)
    present = rows != PAD
    total = (shares[np.where(present, rows, 0)] * present[..., None]).sum(axis=1)
    mass = total.sum(axis=1, keepdims=True)
    return np.divide(total, mass, out=np.zeros_like(total), where=mass > 0).astype(np.float32)


def calibrated_order(
    scores: np.ndarray, candidate_shares: np.ndarray, target: np.ndarray, k: int, weight: float
) -> np.ndarray:
    """int64 [batch, min(k, pool)]: positions into each row's pool, in list order.

    Args:
        scores: float32 [batch, pool], the model's (finite) scores of each row's candidates;
            candidate_shares: float32 [batch, pool, G] their genre shares; target: float32 [batch, G] the
            history's distribution (history_distribution); weight in [0, 1].
    """
    batch, pool = scores.shape
    k = min(k, pool)
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    scaled = ((scores - low) / np.where(high > low, high - low, 1.0)).astype(np.float32)
    if weight == 0:
        return np.argsort(-scaled, axis=1, kind="stable")[:, :k].astype(np.int64)
    target = np.asarray(target, dtype=np.float32)
    chosen = np.zeros((batch, k), dtype=np.int64)
    taken = np.zeros((batch, pool), dtype=bool)
    listed = np.zeros_like(target)  # the genre shares summed over the list so far
    smoothing = (ALPHA * target)[:, None, :]
    for slot in range(k):
        q = (listed[:, None, :] + candidate_shares) * np.float32((1 - ALPHA) / (slot + 1)) + smoothing
        fit = np.einsum("bng,bg->bn", np.log(np.maximum(q, 1e-30)), target)
        utility = (1 - weight) * scaled + weight * fit
        utility[taken] = -np.inf
        best = np.argmax(utility, axis=1)
        chosen[:, slot] = best
        taken[np.arange(batch), best] = True
        listed += candidate_shares[np.arange(batch), best]
    return chosen


CHUNK = 256  # queries re-ordered at once
LONGEST = 100  # the longest list scored (top-100)


def main(
    seed: Annotated[int, typer.Option()] = 42,
    weight: Annotated[
        list[float] | None, typer.Option(help="Calibration weights to score (0: the score order).")
    ] = None,
    pool: Annotated[int, typer.Option(help="The model's best movies each list is re-ordered from.")] = 200,
    evaluate_on: Annotated[str, typer.Option(help="validation (carved from training) or test.")] = "validation",
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    out: Annotated[Path | None, typer.Option()] = None,
) -> None:
    weights = weight or [0.0, 0.1, 0.25, 0.5]
    config = TrainConfig(seed=seed, refit=False, evaluate_on=evaluate_on)  # type: ignore[arg-type]
    prepared = prepare(config, data_dir)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seed": seed,
        "evaluate_on": evaluate_on,
        "pool": pool,
        "alpha": ALPHA,
        "protocols": {},
    }
    for protocol, fold in (("B", prepared.random), ("T", prepared.temporal)):
        assert fold is not None and fold.held_out is not None and fold.test_histories is not None
        started = time.perf_counter()
        run = fit(config, fold, progress=False)
        assert run.test_query_embeddings is not None
        result["protocols"][protocol] = score(fold, run.test_query_embeddings, run.candidate_embeddings, weights, pool)
        result["protocols"][protocol]["seconds"] = round(time.perf_counter() - started, 1)
        print(protocol, json.dumps(result["protocols"][protocol], indent=1), flush=True)
    target = out or Path(f"benchmarks/results/calibration_{evaluate_on}_seed{seed}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")


def score(fold: Fold, queries: np.ndarray, candidates: np.ndarray, weights: list[float], pool: int) -> dict[str, Any]:
    """Per weight: hit@10 and hit@100 (all, liked, disliked) and the top 10's mean KL from the history."""
    held = fold.held_out
    assert held is not None and fold.test_histories is not None
    genres = fold.data.movies["genres"].astype(str).to_numpy()
    names = genre_names(genres)
    shares = genre_shares([g.split("|") if g else [] for g in genres], names)
    assert pool >= LONGEST, f"--pool must be at least {LONGEST}"
    ranks = {w: np.full(len(held), LONGEST, dtype=np.int64) for w in weights}  # LONGEST: not in the list
    kls: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    for lo in range(0, len(held), CHUNK):
        hi = min(lo + CHUNK, len(held))
        top, top_scores = served_top(fold, queries[lo:hi], candidates, lo, pool)
        target = history_distribution(shares, fold.test_histories[lo:hi])
        calibrate = ~held.fallback[lo:hi] & (target.sum(axis=1) > 0)
        for w in weights:
            order = np.tile(np.arange(LONGEST), (hi - lo, 1))
            if w > 0 and calibrate.any():
                order[calibrate] = calibrated_order(
                    top_scores[calibrate], shares[top[calibrate]], target[calibrate], LONGEST, w
                )
            listed = np.take_along_axis(top, order, 1)
            ranks[w][lo:hi] = list_ranks(listed, held.targets[lo:hi])
            kls[w].append(_kl(target[calibrate], shares[listed[calibrate, :10]].mean(axis=1)))
    out: dict[str, Any] = {"queries": len(held), "calibrated": int(sum(len(k) for k in kls[weights[0]]))}
    for w in weights:
        row = hit_table(ranks[w], held.stars)
        row["kl_top_10"] = round(float(np.mean(np.concatenate(kls[w]))), 4)
        out[str(w)] = row
    return out


def served_top(
    fold: Fold, queries: np.ndarray, candidates: np.ndarray, lo: int, pool: int
) -> tuple[np.ndarray, np.ndarray]:
    """int [n, pool] movie rows and float32 [n, pool] scores, best first, of held-out queries lo..lo+n as the
    service answers them: the popularity ranking for a fallback query, every known movie excluded."""
    held = fold.held_out
    assert held is not None
    hi = lo + len(queries)
    scores = queries @ candidates.T
    scores[held.fallback[lo:hi]] = popularity_scores(fold.popularity)
    rows, movies = span_pairs(held.known.movie_rows, held.exclude_start[lo:hi], held.exclude_end[lo:hi])
    scores[rows, movies] = -np.inf
    top = np.argpartition(-scores, pool - 1, axis=1)[:, :pool]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
    return top, np.take_along_axis(scores, top, 1)


def list_ranks(listed: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int64 [n]: each target's position in its list (int [n, L] movie rows), L where it is not listed."""
    found = listed == targets[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1), listed.shape[1]).astype(np.int64)


def hit_table(ranks: np.ndarray, stars: np.ndarray | None) -> dict[str, float]:
    """top-10 and top-100 hit rates, over all held-out ratings and, with their stars, liked and disliked."""
    row = {"top_10": float(np.mean(ranks < 10)), "top_100": float(np.mean(ranks < 100))}
    if stars is not None:
        for name, keep in (("liked", stars >= LIKED), ("disliked", stars <= DISLIKED)):
            row[f"{name}_top_10"] = float(np.mean(ranks[keep] < 10))
            row[f"{name}_top_100"] = float(np.mean(ranks[keep] < 100))
    return {key: round(value, 4) for key, value in row.items()}


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || (1 - ALPHA) q + ALPHA p) per row, as Steck's miscalibration."""
    smoothed = (1 - ALPHA) * q + ALPHA * p
    terms = np.where(p > 0, p * (np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(smoothed, 1e-30))), 0.0)
    return np.asarray(terms.sum(axis=1))


if __name__ == "__main__":
    typer.run(main)
