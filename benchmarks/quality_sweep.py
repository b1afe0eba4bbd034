"""Benchmark: a sweep of training configurations on the real MovieLens-100K, chosen honestly.

Each named configuration (overrides of BASE, the default TrainConfig when the sweeps ran) is trained per seed with
`evaluate_on=validation`: protocols A and B score ratings carved from the random split's training part, T
the latest share of the temporal split's training part, and the test ratings are never looked at. Pick on
those figures, then score the pick on the test ratings once with `--final NAME`. Each run is its own
process (peak memory per run). One row per run goes to benchmarks/results/quality_sweep.json.

    python benchmarks/quality_sweep.py --data-dir data [--only NAME ...] [--seed 42 ...] [--final NAME]
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

# The configuration every sweep row starts from: the default when these sweeps ran (history 20, user dropout
# 0.1, mean pooling, Adagrad 0.1). Fixed here, so a row's name means the same run after the default moves.
BASE: dict[str, Any] = {
    "history_length": 20,
    "history_pooling": "mean",
    "optimizer": "adagrad",
    "learning_rate": 0.1,
    "movie_dropout": 0.0,  # the default until 2026-12-05
    "history_min_rating": 0.0,  # the default until 2026-12-06
    "candidate_genres": False,  # the default until 2026-12-06
    "item_item_prior": 0,  # the default until the night of 2026-12-06
    "item_item_prior_min_rating": 0.0,  # likewise: the prior's rows below were measured reading every rating
}
# The overrides that won on the morning of 2026-12-01; the item-item rows start from them.
POSITIONAL_ADAM: dict[str, Any] = {"history_pooling": "positional", "optimizer": "adam", "learning_rate": 0.001}
DEFAULT_1201: dict[str, Any] = {**POSITIONAL_ADAM, "item_item_dim": 64, "user_dropout": 0.8, "timestamp_buckets": 50}
# The default of 2026-12-06: DEFAULT_1201 with movie dropout, dislikes out of the history, and genres.
DEFAULT_1206: dict[str, Any] = {
    **DEFAULT_1201,
    "movie_dropout": 0.3,
    "history_min_rating": 2.5,
    "candidate_genres": True,
}
# name -> overrides of BASE. "positional_adam_0.001" won (docs/results.md) and was the default on the morning of
# 2026-12-01; "positional_adam_0.001_item_item_64_dropout_0.8_buckets_50" won after it and is the default.
CONFIGS: dict[str, dict[str, Any]] = {
    "base": {},
    "history_50": {"history_length": 50},  # the default before that sweep
    "history_50_dropout_0.3": {"history_length": 50, "user_dropout": 0.3},
    "history_50_dropout_0.5": {"history_length": 50, "user_dropout": 0.5},
    "history_50_epochs_15": {"history_length": 50, "epochs": 15},
    "history_20": {"history_length": 20},
    "history_10": {"history_length": 10},
    "history_20_dropout_0.3": {"history_length": 20, "user_dropout": 0.3},
    "history_20_dropout_0.5": {"history_length": 20, "user_dropout": 0.5},
    # Issue 10's levers, one at a time on the default, then together.
    "accidental_hits": {"remove_accidental_hits": True},
    "positional": {"history_pooling": "positional"},
    "normalized_temp_0.1": {"normalize_embeddings": True, "temperature": 0.1},
    "normalized_temp_0.05": {"normalize_embeddings": True, "temperature": 0.05},
    "genres_year": {"candidate_genres": True, "candidate_year": True},
    "adam_0.001": {"optimizer": "adam", "learning_rate": 0.001},
    "adam_0.003": {"optimizer": "adam", "learning_rate": 0.003},
    # Positional pooling is the one lever that lifts T; these ask whether the A/B levers keep that gain.
    "positional_normalized_temp_0.1": {
        "history_pooling": "positional",
        "normalize_embeddings": True,
        "temperature": 0.1,
    },
    "positional_normalized_temp_0.2": {
        "history_pooling": "positional",
        "normalize_embeddings": True,
        "temperature": 0.2,
    },
    "positional_adam_0.001": POSITIONAL_ADAM,
    "positional_adam_0.003": {"history_pooling": "positional", "optimizer": "adam", "learning_rate": 0.003},
    "positional_history_50": {"history_pooling": "positional", "history_length": 50},
    # Protocol T from the default since 2026-12-01. T is mostly next-movie prediction for users unseen in
    # training (recent_N: the newest movies one by one); its queries come after the training data, so their
    # clamped timestamp lands in the last time bucket, which 1,000 buckets make the last few hours of ML-100K.
    **{
        f"positional_adam_0.001_{name}": {**POSITIONAL_ADAM, **overrides}
        for name, overrides in (
            ("recent_1", {"history_recent": 1}),
            ("recent_3", {"history_recent": 3}),
            ("buckets_50", {"timestamp_buckets": 50}),
            ("buckets_200", {"timestamp_buckets": 200}),
            ("dropout_0.3", {"user_dropout": 0.3}),
            # An item-to-item channel past the dense stacks (FISM-like; item-kNN and EASE on the history beat
            # the two towers under T), with more history-only training examples for the users T mostly asks for.
            ("item_item_64", {"item_item_dim": 64}),
            ("item_item_32_dropout_0.5", {"item_item_dim": 32, "user_dropout": 0.5}),
            ("item_item_64_dropout_0.5", {"item_item_dim": 64, "user_dropout": 0.5}),
            ("item_item_64_dropout_0.8", {"item_item_dim": 64, "user_dropout": 0.8}),
            ("dropout_0.5", {"user_dropout": 0.5}),
            ("item_item_64_dropout_0.5_epochs_20", {"item_item_dim": 64, "user_dropout": 0.5, "epochs": 20}),
            ("item_item_128_dropout_0.8", {"item_item_dim": 128, "user_dropout": 0.8}),
            ("item_item_64_dropout_0.8_epochs_20", {"item_item_dim": 64, "user_dropout": 0.8, "epochs": 20}),
            # At "now" (clamped to the data's end) 1,000 buckets left the last one a few hours of ratings, and the
            # item-item default's lists at now overlapped twice as much across users as a month earlier.
            (
                "item_item_64_dropout_0.8_buckets_50",
                {"item_item_dim": 64, "user_dropout": 0.8, "timestamp_buckets": 50},
            ),
        )
    },
    # Issue 19: the default since the evening of 2026-12-01 (DEFAULT_1201), then what a rating's stars can do:
    # the history's stars scale each history movie's pooling weight (history_ratings), and which ratings are
    # training targets (positive_min_rating; every rating stays history).
    **{
        f"default_1201{name}": {**DEFAULT_1201, **overrides}
        for name, overrides in (
            ("", {}),
            ("_stars", {"history_ratings": True}),
            # Issue 20: every movie a negative instead of the batch's positives.
            ("_full_softmax", {"loss": "full_softmax"}),
            ("_full_softmax_stars", {"loss": "full_softmax", "history_ratings": True}),
            # Issue 20: self-attention over the history instead of its positional pooling.
            ("_attention", {"history_pooling": "attention"}),
            ("_attention_full_softmax", {"history_pooling": "attention", "loss": "full_softmax"}),
            (
                "_attention_full_softmax_stars",
                {"history_pooling": "attention", "loss": "full_softmax", "history_ratings": True},
            ),
            (
                "_attention_full_softmax_2_blocks",
                {"history_pooling": "attention", "loss": "full_softmax", "attention_blocks": 2},
            ),
            (
                "_attention_full_softmax_history_50",
                {"history_pooling": "attention", "loss": "full_softmax", "history_length": 50},
            ),
            ("_positive_4", {"positive_min_rating": 4.0}),
            ("_positive_3", {"positive_min_rating": 3.0}),
            ("_stars_positive_4", {"history_ratings": True, "positive_min_rating": 4.0}),
            ("_stars_positive_3", {"history_ratings": True, "positive_min_rating": 3.0}),
            ("_signed", {"history_ratings": True, "history_rating_scale": "signed"}),
            (
                "_signed_positive_4",
                {"history_ratings": True, "history_rating_scale": "signed", "positive_min_rating": 4.0},
            ),
            # Issue 21: a share of the candidate ids blanked, so a movie added after training is placed by its
            # title and reaches users' lists (benchmarks/item_cold_start.py); what it costs the known movies.
            ("_movie_dropout_0.3", {"movie_dropout": 0.3}),
            # Issue 19: ratings below N stars left out of every history (training, scoring, serving), on the
            # default of 2026-12-05 (movie dropout 0.3): a dislike no longer pulls the query to its neighbours.
            ("_movie_dropout_0.3_history_min_2.5", {"movie_dropout": 0.3, "history_min_rating": 2.5}),
            ("_movie_dropout_0.3_history_min_3.5", {"movie_dropout": 0.3, "history_min_rating": 3.5}),
            # Issue 21: the candidate tower reads the movie's genres as an input (a new movie's too).
            (
                "_movie_dropout_0.3_history_min_2.5_genres",
                {"movie_dropout": 0.3, "history_min_rating": 2.5, "candidate_genres": True},
            ),
            # Issue 21: a share of the title words read as unknown while training, so a new movie's unseen words
            # (its name, a year after 1998) read as a learnt "unknown word" rather than an untrained vector.
            *(
                (
                    f"_movie_dropout_0.3_history_min_2.5_genres_title_dropout_{rate}",
                    {
                        "movie_dropout": 0.3,
                        "history_min_rating": 2.5,
                        "candidate_genres": True,
                        "title_token_dropout": rate,
                    },
                )
                for rate in (0.1, 0.25)
            ),
        )
    },
    # Issue 20: the default of 2026-12-06 (DEFAULT_1206), then a fixed EASE prior of rank r in its item-item
    # channel (training/item_item_prior.py; ease_blend.py found the blend with EASE beats both under T).
    **{
        f"default_1206{name}": {**DEFAULT_1206, **overrides}
        for name, overrides in (
            ("", {}),
            (
                "_ease_prior_128",
                {"item_item_prior": 128, "item_item_prior_gain": None, "item_item_prior_in_training": True},
            ),
            # The prior kept out of training, joined at inference at the gain
            # benchmarks/ease_prior_gain.py chose (its rows hold every gain tried).
            (
                "_ease_prior_128_gain_0.625",
                {"item_item_prior": 128, "item_item_prior_gain": 0.625, "item_item_prior_in_training": False},
            ),
            # The default since the night of 2026-12-06: that prior read from liked ratings only.
            (
                "_ease_prior_128_gain_0.625_liked",
                {
                    "item_item_prior": 128,
                    "item_item_prior_gain": 0.625,
                    "item_item_prior_in_training": False,
                    "item_item_prior_min_rating": 4.0,
                },
            ),
        )
    },
    "all_levers": {
        "remove_accidental_hits": True,
        "history_pooling": "positional",
        "normalize_embeddings": True,
        "temperature": 0.05,
        "candidate_genres": True,
        "candidate_year": True,
    },
}


def _run(name: str, seed: int, final: bool, data_dir: str, models_dir: str, queue: Any) -> None:
    """One configuration and seed in a fresh process; puts its row on `queue`."""
    import training  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    from training.config import TrainConfig
    from training.train import train_versions

    scored_on = "test" if final else "validation"
    config = TrainConfig(**{**BASE, **CONFIGS[name]}, seed=seed, refit=False, evaluate_on=scored_on)
    started, cpu_started = time.perf_counter(), time.process_time()
    version = train_versions([config], Path(data_dir), Path(models_dir), progress=False)[0]
    metrics = version.metrics
    queue.put(
        {
            "name": name,
            "overrides": CONFIGS[name],
            "seed": seed,
            "scored_on": config.evaluate_on,
            **{
                f"{who}_{protocol}_top_{k}": round(tables[protocol][f"top_{k}"], 4)
                for who, tables in (("model", metrics.model), ("most_popular", metrics.most_popular))
                for protocol in ("A", "B", "T", "B_liked", "B_disliked", "T_liked", "T_disliked")
                for k in (10, 100)
                if protocol in tables
            },
            "epochs": config.epochs,
            "wall_seconds": round(time.perf_counter() - started, 1),
            # A paused run (SIGSTOP during someone's timing benchmark) inflates wall time, not CPU time.
            "cpu_seconds": round(time.process_time() - cpu_started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def main(
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    only: Annotated[list[str] | None, typer.Option(help="Configurations to run (default: all).")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Seeds (default: 42).")] = None,
    final: Annotated[str | None, typer.Option(help="Score this configuration on the test ratings.")] = None,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/quality_sweep.json"),
    models_dir: Annotated[Path, typer.Option()] = Path("benchmarks/out/sweep"),
) -> None:
    from benchmarks.machine import machine
    from training.fetch import fetch

    fetch("ml-100k", data_dir, log=lambda m: print(m, file=sys.stderr))
    names = [final] if final else (only or list(CONFIGS))
    unknown = sorted(set(names) - CONFIGS.keys())
    if unknown:
        raise typer.BadParameter(f"unknown configurations {unknown}; known: {sorted(CONFIGS)}")
    results = json.loads(out.read_text()) if out.is_file() else {"machine": machine(), "rows": []}
    spawn = multiprocessing.get_context("spawn")
    for name in names:
        for value in seed or [42]:
            queue = spawn.Queue()
            worker = spawn.Process(target=_run, args=(name, value, bool(final), str(data_dir), str(models_dir), queue))
            worker.start()
            row = queue.get()
            worker.join()
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
