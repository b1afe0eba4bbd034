"""The synthetic MovieLens generator: loadable, exact, deterministic, and its planted structure is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from training.__main__ import app
from training.data import MovieLens, load_movielens
from training.synth import GENRES, SynthResult, SynthSpec, write_synth

SPEC = SynthSpec(users=400, movies=4_000, ratings=16_000, seed=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthResult, MovieLens]:
    result = write_synth(SPEC, tmp_path_factory.mktemp("synth"))
    return result, load_movielens(result.ratings_path.parent)


def _rows(written: tuple[SynthResult, MovieLens]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based user and movie rows and timestamps of every rating, in file order."""
    ratings = written[1].ratings
    return (
        ratings["user_id"].to_numpy() - 1,
        ratings["movie_id"].to_numpy() - 1,
        ratings["timestamp"].to_numpy(),
    )


def test_the_loader_reads_exactly_the_requested_sizes(written: tuple[SynthResult, MovieLens]) -> None:
    result, data = written
    assert data.layout == "csv"
    assert len(data.ratings) == SPEC.ratings and data.ratings["user_id"].nunique() == SPEC.users
    assert len(data.movies) == SPEC.movies and data.movies["movie_id"].tolist() == list(range(1, SPEC.movies + 1))
    assert not data.ratings.duplicated(["user_id", "movie_id"]).any()
    assert set(data.ratings["rating"].unique()) <= {code / 2 for code in range(1, 11)}
    assert 3.2 < data.ratings["rating"].mean() < 3.8  # MovieLens averages ~3.5
    assert data.movies["title"].str.fullmatch(r".+ \((19|20)\d\d\)").all()
    assert data.movies["genres"].str.split("|").map(lambda names: len(names) > 0 and set(names) <= set(GENRES)).all()
    assert result.movie_counts.sum() == SPEC.ratings
    # Titles in MovieLens's "Matrix, The (1999)" form need CSV quoting, and the loader undoes it.
    assert data.movies["title"].str.contains(", The (", regex=False).any()
    assert b'"' in result.movies_path.read_bytes()


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(
    written: tuple[SynthResult, MovieLens], tmp_path: Path
) -> None:
    again = write_synth(SPEC, tmp_path / "again")
    other = write_synth(SynthSpec(users=SPEC.users, movies=SPEC.movies, ratings=SPEC.ratings, seed=4), tmp_path / "b")
    for name in ("ratings.csv", "movies.csv"):
        first = (written[0].ratings_path.parent / name).read_bytes()
        assert (again.ratings_path.parent / name).read_bytes() == first
        assert (other.ratings_path.parent / name).read_bytes() != first
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["movies.csv", "ratings.csv"]


def test_many_blocks_still_give_exact_distinct_ratings(tmp_path: Path) -> None:
    """Blocks of ~1,000 ratings (the default is 1M) exercise the chunked writing and the duplicate redraws."""
    spec = SynthSpec(users=120, movies=60, ratings=3_000, seed=1)  # up to 30 of 60 movies each: many redraws
    write_synth(spec, tmp_path, block_ratings=1_000)
    ratings = load_movielens(tmp_path).ratings
    assert len(ratings) == spec.ratings and ratings["user_id"].nunique() == spec.users
    assert not ratings.duplicated(["user_id", "movie_id"]).any()
    assert ratings.groupby("user_id").size().max() <= spec.movies // 2


def test_a_few_movies_hold_most_ratings_and_most_movies_few(written: tuple[SynthResult, MovieLens]) -> None:
    counts = np.sort(written[0].movie_counts)[::-1]
    assert counts[: SPEC.movies // 10].sum() > 0.6 * SPEC.ratings
    assert np.mean(counts <= 2) > 0.3  # the long tail
    per_user = written[1].ratings.groupby("user_id").size()
    assert per_user.min() >= 20 and per_user.max() > 4 * per_user.median()  # a few heavy raters


def test_users_arrive_in_id_order_and_rate_after_arriving(written: tuple[SynthResult, MovieLens]) -> None:
    planted = written[0].planted
    user, _, timestamp = _rows(written)
    frame = pd.DataFrame({"user": user, "timestamp": timestamp})
    first = frame.groupby("user")["timestamp"].min().to_numpy()
    np.testing.assert_array_equal(first, planted.arrival)  # the first rating is at arrival
    assert np.all(np.diff(first) >= 0)  # user ids are handed out in arrival order
    assert frame.groupby("user")["timestamp"].apply(lambda t: bool(np.all(np.diff(t.to_numpy()) > 0))).all()
    last = frame.groupby("user")["timestamp"].max().to_numpy()
    assert np.all(last <= planted.arrival + planted.span + planted.counts)
    assert first[-1] - first[0] > 15 * 365 * 86_400  # arrivals spread over ML-25M's 25 years


def test_users_rate_movies_close_to_their_taste_at_the_time(written: tuple[SynthResult, MovieLens]) -> None:
    """Beyond popularity: a rated movie is closer to the user's taste then than a movie drawn by popularity."""
    planted = written[0].planted
    user, movie, timestamp = _rows(written)
    decoy = np.random.default_rng(0).choice(SPEC.movies, len(movie), p=planted.popularity)
    taste = planted.taste_at(user, timestamp)

    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    assert np.mean(cosine(taste, planted.factors[movie]) > cosine(taste, planted.factors[decoy])) > 0.7


def test_a_genre_profile_learned_from_the_files_beats_most_popular(written: tuple[SynthResult, MovieLens]) -> None:
    """The planted structure is learnable from ratings.csv and movies.csv alone, as protocol T asks it.

    Each user's earliest 80% of ratings give a genre profile and the movies' counts; ranking the movies they
    have not rated by popularity × profile finds their later movies more often than popularity alone.
    """
    data = written[1]
    user, movie, _ = _rows(written)  # sorted by user, then time
    rank = pd.Series(user).groupby(user).cumcount().to_numpy()
    train = rank < 0.8 * np.bincount(user)[user]
    listed = data.movies["genres"].str.split("|")
    onehot = np.array([[name in names for name in GENRES] for names in listed], dtype=float)
    profile = np.zeros((SPEC.users, len(GENRES)))
    np.add.at(profile, user[train], onehot[movie[train]])
    profile /= profile.sum(axis=1, keepdims=True)
    log_count = np.log1p(np.bincount(movie[train], minlength=SPEC.movies)).astype(float)
    fit = np.log(profile @ onehot.T / onehot.sum(axis=1) + 1e-3)  # [users, movies]
    seen = np.zeros((SPEC.users, SPEC.movies), dtype=bool)
    seen[user[train], movie[train]] = True
    later = np.zeros_like(seen)
    later[user[~train], movie[~train]] = True

    def recall_at_50(scores: np.ndarray) -> float:
        top = np.argsort(-np.where(seen, -np.inf, scores), axis=1)[:, :50]
        return float(np.take_along_axis(later, top, axis=1).sum() / later.sum())

    personal, popular = recall_at_50(log_count + 3.0 * fit), recall_at_50(np.broadcast_to(log_count, seen.shape))
    assert personal > 1.2 * popular, (personal, popular)


def test_ratings_grow_with_affinity_and_tastes_drift(written: tuple[SynthResult, MovieLens]) -> None:
    planted = written[0].planted
    user, movie, timestamp = _rows(written)
    ratings = written[1].ratings["rating"].to_numpy()
    assert np.corrcoef(planted.affinity(user, movie, timestamp), ratings)[0, 1] > 0.3
    # Movies rated long after arrival lean to the end taste, those rated soon after to the start taste.
    factors = planted.factors[movie]
    lean = np.einsum("ij,ij->i", factors, planted.taste_end[user] - planted.taste_start[user])
    elapsed = (timestamp - planted.arrival[user]) / planted.drift_seconds
    late, early = elapsed > 0.3, elapsed < 0.01  # a taste 26% or more of the way to its end, against under 1%
    assert late.sum() > 30 and lean[late].mean() > lean[early].mean() + 0.1


def test_impossible_sizes_fail_with_what_to_ask_for() -> None:
    with pytest.raises(ValueError, match=r"--ratings must be between --users \(10: every user"):
        SynthSpec(users=10, movies=100, ratings=5)
    with pytest.raises(ValueError, match=r"at most half the catalogue, 50 movies"):
        SynthSpec(users=10, movies=100, ratings=501)


def test_the_cli_writes_a_dataset_and_prints_its_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth", "--users", "30", "--movies", "80", "--ratings", "900", "--out", str(out),
                                 "--seed", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    data = load_movielens(out)
    assert (len(data.ratings), data.ratings["user_id"].nunique(), len(data.movies)) == (900, 30, 80)
    result = runner.invoke(app, ["synth", "--users", "30", "--movies", "80", "--ratings", "10", "--out", str(out)])
    assert result.exit_code == 2 and "--ratings must be between" in result.output
