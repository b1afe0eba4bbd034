"""Benchmark: item cold start on real ML-100K. How well does the service place a movie nobody has rated yet?

A seeded random 10% of the movies is held out with all their ratings; a version is trained on the rest (one
fit, the default configuration, unscored) and served in-process; the held-out movies are added through
`POST /movies` with their titles, genres and years, so the service embeds them with the version's candidate
tower as it would any new movie. Then, for each held-out rating (user u, held-out movie m, time t), u is
asked as the service would at t (the query tower on u's id and u's ratings before t in the version's data),
and m is a hit@k if it ranks in u's top k **among the held-out movies**; and, as served, among every movie
(known and new, u's rated ones left out), which also asks whether a new movie reaches u's list at all. Against:
- genre popularity: the held-out movies ranked by how many of u's ratings before t share each one's genres;
- random: the held-out movies in a random order.
And whether the new movies flood the existing users' lists: at now, the share of every known user's top-10
slots that new movies take, against their share of the ratings (all, and the latest 20% by time).
Writes benchmarks/results/item_cold_start.json and prints a markdown table.

    python benchmarks/item_cold_start.py [--data-dir data] [--fraction 0.1] [--seed 0] [--epochs 30]
                                         [--movie-dropout D] [--[no-]candidate-genres] [--title-token-dropout R]
                                         [--item-item-prior R] [--borrowed-prior-neighbours K]
                                         [--out benchmarks/results/item_cold_start.json]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import typer

from benchmarks.machine import machine
from contract.catalogue import title_with_year, title_year
from contract.user_ratings import known_bound
from service.catalogue_schemas import FIRST_YEAR, LAST_YEAR
from training.data import MovieLens, load_movielens

KS = (1, 5, 10, 50, 100)
ADMIN_TOKEN = "benchmark"
BATCH = 512  # queries per query-tower call


def hold_out(data: MovieLens, fraction: float, seed: int) -> np.ndarray:
    """movie_ids of a seeded random `fraction` of the movies."""
    ids = data.movies["movie_id"].to_numpy()
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=round(len(ids) * fraction), replace=False))


def write_known(data: MovieLens, held: np.ndarray, out: Path) -> None:
    """The data without the held-out movies and their ratings, in the GroupLens CSV layout training reads."""
    out.mkdir(parents=True)
    ratings = data.ratings[~data.ratings["movie_id"].isin(held)]
    ratings.rename(columns={"user_id": "userId", "movie_id": "movieId"})[
        ["userId", "movieId", "rating", "timestamp"]
    ].to_csv(out / "ratings.csv", index=False)
    movies = data.movies[~data.movies["movie_id"].isin(held)]
    movies = movies.rename(columns={"movie_id": "movieId"})[["movieId", "title", "genres"]]
    movies.to_csv(out / "movies.csv", index=False)


def new_movie(row: pd.Series, genres: set[str], shift_years: int = 0) -> dict[str, Any]:
    """A held-out movie as POST /movies takes it: its title, its genres the version knows, its year (moved
    `shift_years` later, in the title too: a movie from after the data, with the same raters)."""
    title, own = str(row["title"]), title_year(str(row["title"]))
    year = None if own is None else own + shift_years
    if year is not None and shift_years:
        title = title_with_year(title[: title.rindex("(")].rstrip(), year)
    movie = {
        "movie_id": str(row["movie_id"]),
        "title": title,
        "genres": [g for g in str(row["genres"]).split("|") if g in genres],
    }
    return {**movie, "year": year} if year is not None and FIRST_YEAR <= year <= LAST_YEAR else movie


def ranks_among(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target column (ties count against it: a constant score is no hit)."""
    target = scores[np.arange(len(scores)), targets]
    return (scores >= target[:, None]).sum(axis=1) - 1


def hit_table(ranks: np.ndarray) -> dict[str, float]:
    return {f"top_{k}": round(float(np.mean(ranks < k)), 4) for k in KS}


def main(
    data_dir: Annotated[Path, typer.Option(help="Holds ml-100k (python -m training fetch).")] = Path("data"),
    fraction: Annotated[float, typer.Option(help="Share of the movies held out.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Which movies are held out, and the random baseline.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs (the default configuration's).")] = 30,
    movie_dropout: Annotated[
        float | None, typer.Option(help="TrainConfig.movie_dropout (unset: the default's).")
    ] = None,
    candidate_genres: Annotated[
        bool | None, typer.Option(help="TrainConfig.candidate_genres (unset: the default's).")
    ] = None,
    title_token_dropout: Annotated[
        float | None, typer.Option(help="TrainConfig.title_token_dropout (unset: the default's).")
    ] = None,
    item_item_prior: Annotated[
        int | None, typer.Option(help="TrainConfig.item_item_prior (unset: the default's).")
    ] = None,
    borrowed_prior_neighbours: Annotated[
        int | None, typer.Option(help="Settings.borrowed_prior_neighbours (unset: the default's).")
    ] = None,
    shift_years: Annotated[
        int, typer.Option(help="Add the held-out movies this many years later than their own (titles too).")
    ] = 0,
    title_year_outside: Annotated[
        str | None, typer.Option(help="Settings.title_year_outside: keep, clamp or drop (unset: the default's).")
    ] = None,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/item_cold_start.json"),
) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings
    from training.config import TrainConfig
    from training.train import train_versions

    started = time.perf_counter()
    data = load_movielens(data_dir, "ml-100k")
    held = hold_out(data, fraction, seed)
    is_held = data.ratings["movie_id"].isin(held).to_numpy()
    with tempfile.TemporaryDirectory(prefix="item-cold-start-") as scratch:
        root = Path(scratch)
        write_known(data, held, root / "known")
        levers = {
            "movie_dropout": movie_dropout,
            "candidate_genres": candidate_genres,
            "title_token_dropout": title_token_dropout,
            "item_item_prior": item_item_prior,
        }
        config = TrainConfig(
            epochs=epochs, evaluate=False, refit=True, **{k: v for k, v in levers.items() if v is not None}
        )
        fitting = time.perf_counter()
        [trained] = train_versions([config], root / "known", root / "models", promote_version=True, progress=False)
        fit_seconds = time.perf_counter() - fitting
        lent = borrowed_prior_neighbours
        overrides: dict[str, Any] = {} if lent is None else {"borrowed_prior_neighbours": lent}
        if title_year_outside is not None:
            overrides["title_year_outside"] = title_year_outside
        settings = Settings(
            models_dir=root / "models",
            ratings_url=f"sqlite:///{root}/ratings.db",
            admin_token=ADMIN_TOKEN,
            **overrides,
        )
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 300
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the version did not load"
                time.sleep(0.2)
            version = client.app.state.service.registry.current  # type: ignore[attr-defined]
            genres = set(version.genre_masks)
            held_rows = data.movies[data.movies["movie_id"].isin(held)]
            movies = [new_movie(row, genres, shift_years) for _, row in held_rows.iterrows()]
            adding = time.perf_counter()
            answer = client.post("/movies", json={"movies": movies}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert answer.status_code == 201, answer.text
            add_seconds = time.perf_counter() - adding
            served = client.app.state.service.registry.current  # type: ignore[attr-defined]
            result = score(data, held, is_held, served, seed)
            result["flooding"] = flooding(client, data, held, served)
            result["similar"] = similar_lists(client, data, held, served)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "data": {"dataset": "ml-100k", "fingerprint": data.fingerprint, "num_ratings": len(data.ratings)},
        "held_out": {"fraction": fraction, "seed": seed, "movies": len(held), "ratings": int(is_held.sum())},
        "config": {
            "epochs": epochs,
            "movie_dropout": config.movie_dropout,
            "candidate_genres": config.candidate_genres,
            "title_token_dropout": config.title_token_dropout,
            "history_min_rating": config.history_min_rating,
            "item_item_prior": config.item_item_prior,
            "borrowed_prior_neighbours": settings.borrowed_prior_neighbours,
            "shift_years": shift_years,
            "title_year_outside": settings.title_year_outside,
            "version": trained.version_dir.name,
        },
        **result,
        "seconds": {
            "fit": round(fit_seconds, 1),
            "post_movies": round(add_seconds, 2),
            "wall": round(time.perf_counter() - started, 1),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def score(data: MovieLens, held: np.ndarray, is_held: np.ndarray, served: Any, seed: int) -> dict[str, Any]:
    """hit@k among the held-out movies: the model as served, genre popularity and random."""
    ratings = data.ratings
    known = ratings[~is_held]
    tests = ratings[is_held]
    held_ids = [str(m) for m in held.tolist()]
    held_rows = np.array([served.row_of_movie[m] for m in held_ids], dtype=np.int64)
    column = {m: i for i, m in enumerate(held_ids)}
    targets = np.array([column[str(m)] for m in tests["movie_id"].tolist()], dtype=np.int64)
    users = tests["user_id"].to_numpy(np.int64)
    times = tests["timestamp"].to_numpy(np.int64)
    candidates = served.served_candidates[held_rows]

    # The model, as the service asks at t: the user's id, t, and their ratings in the version before t (the
    # history, and every one of them for the rating term).
    queries = []
    for lo in range(0, len(tests), BATCH):
        hi = min(lo + BATCH, len(tests))
        histories, stars, parts = [], [], []
        for user, moment in zip(users[lo:hi].tolist(), times[lo:hi].tolist(), strict=True):
            rows, when, values = served.ratings_of(str(user))
            bound = known_bound(moment, at_now=False)
            history, rated = served.history_at(rows, when, values, bound)
            histories.append(history)
            stars.append(rated)
            parts.append(served.rating_part(rows, when, values, bound))
        ids = [str(u) for u in users[lo:hi].tolist()]
        queries.append(served.served_queries(served.embed(ids, times[lo:hi].tolist(), histories, stars), parts))
    embedded = np.concatenate(queries)
    model_ranks = ranks_among(embedded @ candidates.T, targets)
    served_ranks = ranks_in_answers(served, users, embedded, held_rows[targets])

    # Genre popularity: how many of u's ratings before t share each held-out movie's genres.
    genre_names = sorted({g for gs in data.movies["genres"] for g in str(gs).split("|") if g})
    pairs = zip(data.movies["movie_id"], data.movies["genres"], strict=True)
    movie_genres = {m: np.isin(genre_names, str(gs).split("|")) for m, gs in pairs}
    held_genres = np.stack([movie_genres[int(m)] for m in held_ids]).astype(np.float32)  # [held, genres]
    by_user = {u: group.sort_values("timestamp") for u, group in known.groupby("user_id")}
    rng = np.random.default_rng(seed)
    genre_scores = np.zeros((len(tests), len(held_ids)), dtype=np.float32)
    for i, (user, moment) in enumerate(zip(users.tolist(), times.tolist(), strict=True)):
        group = by_user.get(user)
        if group is None:
            continue
        before = group[group["timestamp"].to_numpy() < moment]["movie_id"].tolist()
        counts = np.zeros(len(genre_names), dtype=np.float32)
        for movie in before:
            counts += movie_genres[movie]
        genre_scores[i] = held_genres @ counts
    tie_break = rng.random(genre_scores.shape, dtype=np.float32) * 1e-3  # ties in a random order, not against
    genre_ranks = ranks_among(genre_scores + tie_break, targets)
    random_ranks = ranks_among(rng.random((len(tests), len(held_ids)), dtype=np.float32), targets)
    return {
        "queries": len(tests),
        "held_out_movies": len(held_ids),
        # Where /recommend puts the held-out movie among every movie, known and new, the user's rated ones left
        # out: how well it is placed and whether it reaches the user's list at all, together.
        "hit_among_all_movies": hit_table(served_ranks),
        "hit_among_held_out": {
            "model": hit_table(model_ranks),
            "genre_popularity": hit_table(genre_ranks),
            "random": hit_table(random_ranks),
        },
    }


def ranks_in_answers(served: Any, users: np.ndarray, queries: np.ndarray, target_rows: np.ndarray) -> np.ndarray:
    """0-based rank of each target row among all the served version's movies, as /recommend ranks them: by the
    served query's dot product with the served candidates, the user's rated movies excluded (their ratings in
    the version, at any time)."""
    ranks = np.empty(len(queries), dtype=np.int64)
    embeddings = served.served_candidates
    for lo in range(0, len(queries), BATCH):
        scores = queries[lo : lo + BATCH] @ embeddings.T
        for i, user in enumerate(users[lo : lo + BATCH].tolist()):
            scores[i, served.ratings_of(str(user))[0]] = -np.inf
        rows = target_rows[lo : lo + BATCH]
        target = scores[np.arange(len(rows)), rows]
        ranks[lo : lo + BATCH] = (scores >= target[:, None]).sum(axis=1) - 1
    return ranks


def similar_lists(client: Any, data: MovieLens, held: np.ndarray, served: Any) -> dict[str, Any]:
    """Each new movie's /movies/{id}/similar top 10, as served, as the whole-embedding cosine (the first rule),
    as the cosine of the embeddings' content columns (every movie read with its own id; the rule before
    content_embeddings.npy) and as genre popularity (the known movies sharing most genres, most rated first),
    against what its held-out raters say: the 10 other movies, known or new, most co-rated with it (item-kNN
    over every rating: co-raters / sqrt(raters of one x raters of the other + 1), the measure /similar itself
    uses once a movie has ratings). Also each list's share of other new movies and of movies sharing a genre
    with it. And as the rule before content rows were centred (served until 2026-12-07): the content embeddings'
    plain cosine."""
    from service.live_version import base_of
    from service.similar import prepare, unit_rows

    raters = {str(m): set(group["user_id"]) for m, group in data.ratings.groupby("movie_id")}
    pairs = zip(data.movies["movie_id"], data.movies["genres"], strict=True)
    genres = {str(m): set(str(gs).split("|")) - {""} for m, gs in pairs}
    held_ids = {str(m) for m in held.tolist()}
    ids = [movie["movie_id"] for movie in served.movies]
    known = [m for m in ids if m not in held_ids]
    unit = unit_rows(served.candidate_embeddings)
    columns = unit_rows(served.candidate_embeddings[:, : unit.shape[1] - served.manifest.item_item_dim])
    known_content = base_of(served).content_embeddings  # new movies: their content columns (similar.extend)
    uncentred = unit_rows(np.concatenate([known_content, columns[len(known_content) :]]))
    centred = prepare(served).content
    sources = [m for m in sorted(held_ids, key=int) if len(raters.get(m, ())) >= 5]  # enough raters to say
    lists: dict[str, list[list[str]]] = {
        "served": [],
        "whole_embedding": [],
        "content_columns": [],
        "content_uncentred": [],
        "content_centred": [],
        "genre_popularity": [],
    }
    by_raters = sorted(known, key=lambda m: -len(raters.get(m, ())))  # most rated first
    truths = []
    for movie in sources:
        mine = raters[movie]
        others = [m for m in ids if m != movie]
        co = {m: len(mine & raters.get(m, set())) / np.sqrt(len(mine) * len(raters.get(m, ())) + 1) for m in others}
        truths.append(set(sorted(co, key=lambda m: -co[m])[:10]))
        answer = client.get(f"/movies/{movie}/similar", params={"k": 10})
        assert answer.status_code == 200, answer.text
        lists["served"].append([item["movie_id"] for item in answer.json()["items"]])
        row = served.row_of_movie[movie]
        for name, vectors in (
            ("whole_embedding", unit),
            ("content_columns", columns),
            ("content_uncentred", uncentred),
            ("content_centred", centred),
        ):
            cosines = vectors @ vectors[row]
            cosines[row] = -np.inf
            lists[name].append([ids[r] for r in np.argsort(-cosines, kind="stable")[:10]])
        # The baseline: the known movies sharing most of its genres, the most rated first (a stable sort).
        lists["genre_popularity"].append(sorted(by_raters, key=lambda m: -len(genres[m] & genres[movie]))[:10])
    figures: dict[str, Any] = {"movies": len(sources)}
    for name, answers in lists.items():
        rows = list(zip(sources, answers, truths, strict=True))
        figures[name] = {
            "co_rated_at_10": round(float(np.mean([len(set(a) & t) / 10 for _, a, t in rows])), 4),
            "new_movies_share": round(float(np.mean([np.mean([m in held_ids for m in a]) for _, a, _ in rows])), 4),
            "shares_a_genre": round(
                float(np.mean([np.mean([bool(genres[m] & genres[s]) for m in a]) for s, a, _ in rows])), 4
            ),
        }
    return figures


def flooding(client: Any, data: MovieLens, held: np.ndarray, served: Any) -> dict[str, Any]:
    """At now, the share of every known user's top-10 slots the new movies take, and their rating shares."""
    held_ids = {str(m) for m in held.tolist()}
    slots = new = 0
    for user in sorted(served.user_rows, key=int):
        items = client.get("/recommend", params={"user_id": user, "k": 10}).json()["items"]
        slots += len(items)
        new += sum(item["movie_id"] in held_ids for item in items)
    ratings = data.ratings
    latest = ratings[ratings["timestamp"] >= ratings["timestamp"].quantile(0.8)]
    return {
        "users": len(served.user_rows),
        "top_10_share_of_new_movies": round(new / max(slots, 1), 4),
        "share_of_ratings": round(float(ratings["movie_id"].isin(held).mean()), 4),
        "share_of_latest_20pct_ratings": round(float(latest["movie_id"].isin(held).mean()), 4),
        "share_of_movies": round(len(held) / len(data.movies), 4),
    }


def markdown(result: dict[str, Any]) -> str:
    table = result["hit_among_held_out"]
    lines = ["| ranking | " + " | ".join(f"hit@{k}" for k in KS) + " |", "| --- |" + " ---: |" * len(KS)]
    for name, hits in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{hits[f'top_{k}']:.3f}" for k in KS) + " |")
    served = result["hit_among_all_movies"]
    lines.append("| model as served, among every movie | " + " | ".join(f"{served[f'top_{k}']:.3f}" for k in KS) + " |")
    flood = result["flooding"]
    lines += [
        "",
        f"{result['queries']} held-out ratings of {result['held_out_movies']} held-out movies; "
        f"new movies take {flood['top_10_share_of_new_movies']:.3f} of {flood['users']} users' top-10 slots at now, "
        f"against {flood['share_of_ratings']:.3f} of all ratings and {flood['share_of_latest_20pct_ratings']:.3f} "
        "of the latest 20%",
        "",
        f"/similar for the {result['similar']['movies']} new movies with 5+ held-out raters, top 10:",
        "",
        "| rule | share of the 10 movies most co-rated | share of new movies | share sharing a genre |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in (
        "served",
        "content_centred",
        "content_uncentred",
        "whole_embedding",
        "content_columns",
        "genre_popularity",
    ):
        row = result["similar"][name]
        lines.append(
            f"| {name} | {row['co_rated_at_10']:.3f} | {row['new_movies_share']:.3f} | {row['shares_a_genre']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    typer.run(main)
