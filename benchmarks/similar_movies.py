"""Benchmark: which definition of "similar movies" names the movie a user rated next (issue 19).

Measure: for each held-out protocol-T rating (the latest 20% by time) whose user rated something strictly
before it (contract/user_ratings.py), is the held-out movie among the top-10 "similar" of the user's newest
earlier movie? Also, per definition, the largest share of the catalogue's top-10 lists one movie is in
(target: at most 5%; ranked by the dot product, a handful of popular movies head nearly every list).

One version is trained (TrainConfig(evaluate=False): one fit on every rating of a data dir) on the earliest
80% by time and scored on the latest 20%: the test figures. The definition is chosen on validation: a second
version trained on the earliest 64%, scored on the next 16% (64-80%), the test ratings never known. Item-kNN
(cosine of co-ratings, benchmarks/classical_baselines.item_knn) is computed from the same training ratings.
"service" is service/similar.py's answer on the loaded version, computed movie by movie as a request would.
Writes benchmarks/results/similar_movies.json and prints a markdown table and the named movies' lists.

    python benchmarks/similar_movies.py [--data-dir data] [--test-version-dir D --validation-version-dir D]
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import typer

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.classical_baselines import interactions, item_knn
from benchmarks.machine import machine
from contract.user_ratings import PAD, UserRatings, build_user_ratings, known_bound
from service import similar
from service.artifacts import ModelVersion, load_version
from training.config import TrainConfig
from training.data import ML100K_GENRES, MovieLens, load_movielens
from training.dataset import catalogue_rows
from training.fetch import fetch
from training.folds import _temporal_split
from training.train import train_versions

K = 10
MAX_SHARE = 0.05  # the target: no movie in more than 5% of the catalogue's top-10 lists
BLEND_WEIGHTS = (0.25, 0.5, 0.75)  # share of the embedding cosine in a blend with item-kNN
BLENDED = ("cosine", "cosine_item_item")
# Popularity damping of item-kNN: co-ratings / (raters of the movie asked about^(1 - b) x raters of the
# listed one^b + 1); b = 0.5 is the cosine, a larger b lists popular movies less (2026-12-07).
DAMPING = (0.65, 0.8)
# Weights of the genre overlap (Jaccard) added to the served blend of cosine and item-kNN (2026-12-07, evening):
# without it the lists read as "popular with the same people" (Scream: Liar Liar, Contact, Air Force One).
GENRE_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
NAMED = (
    "Star Wars (1977)", "Godfather, The (1972)", "Alien (1979)", "Terminator, The (1984)",
    "Empire Strikes Back, The (1980)", "Lion King, The (1994)", "Toy Story (1995)", "Scream (1996)",
)  # fmt: skip
DESCRIPTIONS = {
    "dot": "dot product of the whole 96-wide candidate embeddings (the served /similar before issue 19)",
    "cosine": "cosine of the whole candidate embeddings",
    "cosine_dense": "cosine of the dense stack's 32 columns",
    "cosine_item_item": "cosine of the item-item channel's 64 columns",
    "item_item_query": "the item-item channel's own score: the query-side vector of the movie (a history of it "
    "alone) against each movie's candidate-side vector",
    "recommend_from_one": "the model's score for a new user whose only rating is the movie (query tower, at the "
    "data's end)",
    "item_knn": "baseline: cosine of co-ratings among the training users (item-kNN)",
    **{f"blend_{part}_{w:g}": f"{w:g} x {part} + {1 - w:g} x item_knn" for part in BLENDED for w in BLEND_WEIGHTS},
    **{f"blend_cosine_0.5_damped_{b:g}": f"0.5 x cosine + 0.5 x item-kNN damped, b = {b:g}" for b in DAMPING},
    **{
        f"blend_genre_{g:g}": f"the served blend (0.5 x cosine + 0.5 x item-kNN, service/similar.py) + {g:g} x the "
        "Jaccard overlap of the two movies' genres"
        for g in GENRE_WEIGHTS
    },
    "service": "service/similar.py on the loaded version, one call per movie",
}


@dataclass(frozen=True)
class Split:
    """One scoring: the ratings a version is fit on, the held-out ones, and every rating a query may know."""

    fit: pd.DataFrame
    held_out: pd.DataFrame
    known: pd.DataFrame


def splits(data: MovieLens) -> dict[str, Split]:
    """test: fit on the earliest 80%, score the latest 20%; validation: the same inside that 80%."""
    train, test, _ = _temporal_split(data.ratings, 0.2, None)
    inner, validation, _ = _temporal_split(train, 0.2, None)
    return {"validation": Split(inner, validation, train), "test": Split(train, test, data.ratings)}


def write_ml100k(data: MovieLens, ratings: pd.DataFrame, directory: Path) -> None:
    """`ratings` and the whole catalogue as GroupLens ml-100k files (u.data, u.item), which load_movielens reads."""
    directory.mkdir(parents=True)
    ratings[["user_id", "movie_id", "rating", "timestamp"]].to_csv(
        directory / "u.data", sep="\t", header=False, index=False
    )
    lines = []
    for movie_id, title, genres in data.movies[["movie_id", "title", "genres"]].itertuples(index=False):
        names = set(str(genres).split("|"))
        flags = "|".join("1" if genre in names else "0" for genre in ML100K_GENRES)
        lines.append(f"{movie_id}|{title}||||{flags}\n")
    (directory / "u.item").write_text("".join(lines), encoding="utf-8")


def train_version(data: MovieLens, ratings: pd.DataFrame, models_dir: Path) -> tuple[Path, float]:
    """A servable version fit once on `ratings` (the default model, unscored), and the seconds it took."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="similar-data-") as scratch:
        write_ml100k(data, ratings, Path(scratch) / "ml-100k")
        version = train_versions([TrainConfig(evaluate=False)], Path(scratch), models_dir, progress=False)[0]
    return version.version_dir, time.perf_counter() - started


def queries(data: MovieLens, split: Split, version: ModelVersion) -> tuple[np.ndarray, np.ndarray, int]:
    """Version rows of each held-out movie and of its user's newest earlier movie (ratings with none dropped),
    and how many held-out ratings there were."""
    known = build_user_ratings(split.known, catalogue_rows(data, split.known))
    users = split.held_out["user_id"].to_numpy(np.int64)
    bounds = known_bound(split.held_out["timestamp"].to_numpy(np.int64), at_now=False)
    newest = known.histories(users, bounds, 1)[:, 0]
    to_version = np.array([version.row_of_movie[str(m)] for m in data.movies["movie_id"]], dtype=np.int64)
    has = newest != PAD
    targets = to_version[catalogue_rows(data, split.held_out)]
    return to_version[newest[has]], targets[has], len(users)


def channel_columns(version: ModelVersion) -> slice:
    """The item-item channel's columns of the candidate embeddings: past the dense stack's `layers[-1]`."""
    dense = int(version.manifest.config["layers"][-1])
    assert dense < version.manifest.embedding_dim, "the version has no item-item channel"
    return slice(dense, None)


def top_lists(scores: np.ndarray) -> np.ndarray:
    """int [movies, K]: each row's K best other movies, best first (ties to the lower row)."""
    scores = scores.astype(np.float32, copy=True)
    np.fill_diagonal(scores, -np.inf)
    best = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    lists = np.empty_like(best)
    for row in range(len(best)):
        order = np.lexsort((best[row], -scores[row, best[row]]))
        lists[row] = best[row][order]
    return lists


def damped_knn(version: ModelVersion, fit: pd.DataFrame, data: MovieLens, b: float) -> np.ndarray:
    """float32 [movies, movies] in version rows: co-ratings / (raters of the row's movie^(1 - b) x raters of the
    column's^b + 1), zero on the diagonal (DAMPING)."""
    matrix = interactions(build_user_ratings(fit, catalogue_rows(data, fit)), len(data.movies))
    counts = matrix.sum(axis=0).astype(np.float64)
    co = (matrix.T @ matrix).astype(np.float64) / (
        np.power(counts, 1 - b)[:, None] * np.power(counts, b)[None, :] + 1.0
    )
    np.fill_diagonal(co, 0.0)
    return in_version_rows(version, data, co)


def in_version_rows(version: ModelVersion, data: MovieLens, catalogue: np.ndarray) -> np.ndarray:
    """float32 [movies, movies]: a movies x movies matrix in catalogue order, put in `version`'s rows."""
    to_version = np.array([version.row_of_movie[str(m)] for m in data.movies["movie_id"]], dtype=np.int64)
    similarity = np.zeros((version.num_movies, version.num_movies), dtype=np.float32)
    similarity[np.ix_(to_version, to_version)] = catalogue
    return similarity


def damped_blends(
    cosine: Callable[[], np.ndarray], version: ModelVersion, fit: pd.DataFrame, data: MovieLens
) -> dict[str, Callable[[], np.ndarray]]:
    """The served blend's weights with item-kNN damped by each of DAMPING."""

    def blend(b: float) -> Callable[[], np.ndarray]:
        return lambda: 0.5 * cosine() + 0.5 * damped_knn(version, fit, data, b)

    return {f"blend_cosine_0.5_damped_{b:g}": blend(b) for b in DAMPING}


def score_matrices(version: ModelVersion, fit: pd.DataFrame, data: MovieLens) -> dict[str, Callable[[], np.ndarray]]:
    """Each definition's movies x movies score matrix (in version rows), built on demand."""
    embeddings = version.candidate_embeddings
    columns = channel_columns(version)
    dense = slice(0, columns.start)
    tower = version.query_tower

    def cosine(part: slice) -> np.ndarray:
        unit = similar.unit_rows(embeddings[:, part])
        return unit @ unit.T

    def item_item_query() -> np.ndarray:
        assert tower is not None and tower.arrays.item_item_embedding is not None
        assert tower.arrays.history_vocabulary is not None
        vocabulary = {token: row for row, token in enumerate(tower.arrays.history_vocabulary.tolist())}
        rows = [vocabulary[movie["movie_id"]] for movie in version.movies]
        return tower.arrays.item_item_embedding[rows] @ embeddings[:, columns].T

    def recommend_from_one() -> np.ndarray:
        ids = [movie["movie_id"] for movie in version.movies]
        end = version.manifest.data.timestamp_max
        return version.embed([""] * len(ids), [end] * len(ids), [[movie_id] for movie_id in ids]) @ embeddings.T

    def knn() -> np.ndarray:
        known = build_user_ratings(fit, catalogue_rows(data, fit))
        return in_version_rows(version, data, item_knn(interactions(known, len(data.movies))))

    cache: dict[str, np.ndarray] = {}

    def cached(name: str, build: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        def get() -> np.ndarray:
            if name not in cache:
                cache[name] = build()
            return cache[name]

        return get

    knn_cached = cached("item_knn", knn)
    parts = {
        "cosine": cached("cosine", lambda: cosine(slice(None))),
        "cosine_item_item": cached("cosine_item_item", lambda: cosine(columns)),
    }
    matrices: dict[str, Callable[[], np.ndarray]] = {
        "dot": lambda: embeddings @ embeddings.T,
        "cosine": parts["cosine"],
        "cosine_dense": lambda: cosine(dense),
        "cosine_item_item": parts["cosine_item_item"],
        "item_item_query": item_item_query,
        "recommend_from_one": recommend_from_one,
        "item_knn": knn_cached,
    }
    for part in BLENDED:
        for w in BLEND_WEIGHTS:
            matrices[f"blend_{part}_{w:g}"] = lambda p=parts[part], w=w: w * p() + (1 - w) * knn_cached()  # type: ignore[misc]
    matrices |= damped_blends(parts["cosine"], version, fit, data)
    matrices |= genre_blends(version)
    return matrices


def genre_blends(version: ModelVersion) -> dict[str, Callable[[], np.ndarray]]:
    """service/similar.py's scores with each of GENRE_WEIGHTS as the genre overlap's weight."""
    index = similar.prepare(version)

    def blend(weight: float) -> Callable[[], np.ndarray]:
        weighted = dataclasses.replace(index, genre_weight=weight)
        return lambda: np.stack([weighted.scores(row) for row in range(version.num_movies)])

    return {f"blend_genre_{g:g}": blend(g) for g in GENRE_WEIGHTS}


def title_stem(title: str) -> str:
    """A title without its year, article and sequel mark ("Godfather: Part II, The (1974)" -> "godfather"), so
    that a film and its sequels or prequels share one stem: a rough test of what a fan expects to find."""
    title = re.sub(r"\s*\(\d{4}\)$", "", title)
    title = re.sub(r", (The|A|An)$", "", title)
    return re.split(r":| \d| II| III| IV| Part", title)[0].strip().lower()


def title_siblings(version: ModelVersion) -> dict[int, set[int]]:
    """Each movie that shares its title_stem with others: those others (version rows)."""
    by_stem: dict[str, list[int]] = {}
    for row, movie in enumerate(version.movies):
        by_stem.setdefault(title_stem(movie["title"]), []).append(row)
    return {row: set(rows) - {row} for rows in by_stem.values() if len(rows) > 1 for row in rows}


def service_lists(version: ModelVersion) -> tuple[np.ndarray, float]:
    """The served top-K of every movie, one call per movie, and the mean seconds a call took."""
    started = time.perf_counter()
    lists = np.stack([similar.nearest(version, row, K)[0] for row in range(version.num_movies)])
    return lists, (time.perf_counter() - started) / version.num_movies


def figures(lists: np.ndarray, sources: np.ndarray, targets: np.ndarray, version: ModelVersion) -> dict[str, Any]:
    """hit@K of the measure, the movie in the most top-K lists with its share of the catalogue, and two reads of
    what a person expects: the share of listed movies that share a genre with the movie asked about, and of a
    movie's title siblings (title_stem: sequels, prequels) its list names."""
    hits = (lists[sources] == targets[:, None]).any(axis=1)
    counts = np.bincount(lists.ravel(), minlength=version.num_movies)
    top = int(np.argmax(counts))
    genres = similar.genre_matrix(version.movies)
    shares_genre = (np.einsum("mkg,mg->mk", genres[lists], genres) > 0).mean()
    siblings = title_siblings(version)
    found = [len(others & set(lists[row].tolist())) / min(len(others), K) for row, others in siblings.items()]
    return {
        "hit_at_10": round(float(hits.mean()), 4),
        "max_list_share": round(float(counts[top]) / version.num_movies, 4),
        "most_listed": version.movies[top]["title"],
        "shares_a_genre": round(float(shares_genre), 4),
        "title_siblings_listed": round(float(np.mean(found)), 4) if found else None,
    }


def named_lists(version: ModelVersion, lists: dict[str, np.ndarray]) -> dict[str, dict[str, list[str]]]:
    by_title = {movie["title"]: row for row, movie in enumerate(version.movies)}
    return {
        title: {name: [version.movies[r]["title"] for r in rows[by_title[title]][:5]] for name, rows in lists.items()}
        for title in NAMED
    }


def scale_check(num_movies: int, num_ratings: int, dim: int = 96) -> dict[str, Any]:
    """Seconds to build service/similar.py's index over `num_movies` random movies and `num_ratings` ratings
    (Zipf-like popularity, 20 ratings a user on average, one to three of ML-100K's 19 genres a movie), and to
    answer the most rated and a median movie."""
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(num_movies, dim)).astype(np.float32)
    popularity = 1.0 / (np.arange(num_movies) + 10.0)
    movie_rows = rng.choice(num_movies, size=num_ratings, p=popularity / popularity.sum()).astype(np.int32)
    users = np.sort(rng.integers(0, num_ratings // 20, size=num_ratings))
    user_ids, starts = np.unique(users, return_index=True)
    ratings = UserRatings(
        user_ids=user_ids.astype(str),
        indptr=np.append(starts, num_ratings).astype(np.int64),
        movie_rows=movie_rows,
        timestamps=np.zeros(num_ratings, dtype=np.int64),
    )
    genres = np.zeros((num_movies, len(ML100K_GENRES)), dtype=np.float32)
    every = np.arange(num_movies)
    genres[every, rng.integers(0, len(ML100K_GENRES), size=num_movies)] = 1.0
    for _ in range(2):  # up to two more, each with probability 0.4
        genres[every, rng.integers(0, len(ML100K_GENRES), size=num_movies)] += rng.random(num_movies) < 0.4
    genres = np.minimum(genres, 1.0)
    started = time.perf_counter()
    index = similar.SimilarIndex.build(embeddings, ratings, genres=genres)
    build_seconds = time.perf_counter() - started
    timings: dict[str, Any] = {"movies": num_movies, "ratings": num_ratings, "dim": dim}
    timings["build_seconds"] = round(build_seconds, 2)
    by_raters = np.argsort(-index.raters, kind="stable")
    for label, row in (("most_rated", int(by_raters[0])), ("median", int(by_raters[num_movies // 2]))):
        started = time.perf_counter()
        for _ in range(5):
            scores = index.scores(row)
            np.argpartition(-scores, K)[: K + 1]
        timings[f"{label}_raters"] = int(index.raters[row])
        timings[f"{label}_query_seconds"] = round((time.perf_counter() - started) / 5, 4)
    return timings


def evaluate(data: MovieLens, split: Split, version: ModelVersion) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every definition's figures on one split, and each definition's top-K lists."""
    sources, targets, held_out = queries(data, split, version)
    lists = {name: top_lists(build()) for name, build in score_matrices(version, split.fit, data).items()}
    started = time.perf_counter()
    similar.prepare(version)
    prepare_seconds = time.perf_counter() - started
    lists["service"], call_seconds = service_lists(version)
    table = {name: figures(rows, sources, targets, version) for name, rows in lists.items()}
    info = {
        "held_out_ratings": held_out,
        "scored_ratings": len(sources),
        "fit_ratings": len(split.fit),
        "service_prepare_seconds": round(prepare_seconds, 5),
        "service_call_seconds": round(call_seconds, 6),
        "definitions": table,
    }
    return info, lists


CHOICE = (
    f"among the definitions with max share <= {MAX_SHARE:.0%} and hit@10 at least item-kNN's (the issue's floor), "
    "the one listing the most title siblings, then the best hit@10"
)


def choose(validation: dict[str, dict[str, Any]]) -> str:
    """The definition CHOICE names, on validation figures. The hit rate alone chose lists of what the same
    people rated (the next movie rated is most often a popular one); past the floor, a film's own sequels and
    prequels are what a person checks first."""
    floor = validation["item_knn"]["hit_at_10"]
    eligible = [
        name
        for name, row in validation.items()
        if name != "service" and row["max_list_share"] <= MAX_SHARE and row["hit_at_10"] >= floor
    ]
    return max(eligible, key=lambda n: (validation[n]["title_siblings_listed"] or 0.0, validation[n]["hit_at_10"]))


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| definition | validation hit@10 | test hit@10 | test max share of top-10 lists (movie) "
        "| test shares a genre | test title siblings listed (validation) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    validation, test = results["validation"]["definitions"], results["test"]["definitions"]
    for name, row in test.items():
        lines.append(
            f"| {name} | {validation[name]['hit_at_10']:.4f} | {row['hit_at_10']:.4f} | "
            f"{row['max_list_share']:.1%} ({row['most_listed']}) | {row['shares_a_genre']:.3f} | "
            f"{row['title_siblings_listed']:.3f} ({validation[name]['title_siblings_listed']:.3f}) |"
        )
    return "\n".join(lines)


def main(
    data_dir: Annotated[Path, typer.Option()] = Path("data"),
    test_version_dir: Annotated[Path | None, typer.Option(help="A version fit on the earliest 80%.")] = None,
    validation_version_dir: Annotated[Path | None, typer.Option(help="A version fit on the earliest 64%.")] = None,
    models_dir: Annotated[Path, typer.Option(help="Where trained versions go.")] = Path("benchmarks/out/similar"),
    scale_movies: Annotated[int, typer.Option(help="Catalogue size of the timing check; 0: skip.")] = 1_000_000,
    scale_ratings: Annotated[int, typer.Option(help="Ratings of the timing check.")] = 10_000_000,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/similar_movies.json"),
) -> None:
    fetch("ml-100k", data_dir, log=lambda m: print(m, file=sys.stderr))
    started = time.perf_counter()
    data = load_movielens(data_dir)
    given = {"validation": validation_version_dir, "test": test_version_dir}
    results: dict[str, Any] = {
        "benchmark": "similar movies: is the held-out movie in the top-10 similar of the user's newest earlier movie",
        "definitions": DESCRIPTIONS,
        "machine": machine(),
    }
    lists: dict[str, dict[str, np.ndarray]] = {}
    for name, split in splits(data).items():
        version_dir, fit_seconds = given[name], None
        if version_dir is None:
            version_dir, fit_seconds = train_version(data, split.fit, models_dir / name)
        version = load_version(version_dir, max_batch=1, min_recall=0.8)
        results[name], lists[name] = evaluate(data, split, version)
        results[name].update(version=str(version_dir), train_seconds=fit_seconds and round(fit_seconds, 1))
        if name == "test":
            shown = {"service": lists[name]["service"], "blend_genre_0": lists[name]["blend_genre_0"]}
            results["lists"] = named_lists(version, shown)
    results["chosen_on_validation"] = choose(results["validation"]["definitions"])
    served = f"blend_genre_{similar.GENRE_WEIGHT:g}"
    results["service_definition"] = served
    results["service_lists_equal_to_its_definition"] = {
        name: round(float((lists[name]["service"] == lists[name][served]).all(axis=1).mean()), 4) for name in lists
    }
    if scale_movies:
        results["scale_check"] = scale_check(scale_movies, scale_ratings)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nchosen on validation: {results['chosen_on_validation']} ({CHOICE})")
    for title, by_definition in results["lists"].items():
        print(f"\n{title}")
        for definition, titles in by_definition.items():
            print(f"  {definition:8} {'; '.join(titles)}")


if __name__ == "__main__":
    typer.run(main)
