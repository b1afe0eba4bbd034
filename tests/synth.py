"""Tiny synthetic MovieLens-shaped data in every supported layout (no real MovieLens in the repo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import ML100K_GENRES

GENRES = ("Action", "Comedy", "Drama", "Sci-Fi")
BASE_TIME = 880_000_000


@dataclass(frozen=True)
class Synth:
    """Ratings with structure: users of cluster c mostly rate movies of genre c, so a model can learn it."""

    ratings: np.ndarray  # int64 [n, 4]: user_id, movie_id, rating, timestamp
    movies: list[tuple[int, str, str]]  # movie_id, title ("Name (1995)"), genres "A|B"


def make_synth(num_users: int = 60, num_movies: int = 40, per_user: int = 20, seed: int = 0) -> Synth:
    rng = np.random.default_rng(seed)
    movies = []
    for movie_id in range(1, num_movies + 1):
        genre = GENRES[movie_id % len(GENRES)]
        name = f"Film {movie_id} {genre} Story"
        if movie_id in (7, 8):
            name = "Chasing Amy"  # two distinct movies, one title: keys must be movie ids
        if movie_id == 3:
            name = "Café, Society"  # a non-ASCII character and a comma, for the encodings and CSV quoting
        year = 1997 if movie_id in (7, 8) else 1990 + movie_id % 10
        movies.append((movie_id, f"{name} ({year})", genre))
    rows = []
    for user_id in range(1, num_users + 1):
        liked = [m for m, _, g in movies if g == GENRES[user_id % len(GENRES)]]
        others = [m for m, _, _ in movies]
        picks = set(rng.choice(liked, size=min(len(liked), per_user * 3 // 4), replace=False).tolist())
        while len(picks) < per_user:
            picks.add(int(rng.choice(others)))
        for movie_id in sorted(picks):
            rows.append((user_id, movie_id, int(rng.integers(1, 6)), BASE_TIME + int(rng.integers(0, 10_000_000))))
    return Synth(ratings=np.array(rows, dtype=np.int64), movies=movies)


def write_layout(synth: Synth, directory: Path, layout: str) -> Path:
    """Writes `synth` as GroupLens ml-100k, ml-1m (.dat), CSV or RecBole atomic files; returns the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    r = synth.ratings
    if layout == "ml-100k":
        lines = [f"{u}\t{m}\t{s}\t{t}" for u, m, s, t in r]
        (directory / "u.data").write_text("\n".join(lines) + "\n")
        items = []
        for movie_id, title, genres in synth.movies:
            flags = ["1" if g in genres.split("|") else "0" for g in ML100K_GENRES]
            items.append("|".join([str(movie_id), title, "01-Jan-1995", "", "http://example.invalid/", *flags]))
        (directory / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    elif layout == "dat":
        (directory / "ratings.dat").write_text("\n".join(f"{u}::{m}::{s}::{t}" for u, m, s, t in r) + "\n")
        dat = "\n".join(f"{m}::{t}::{g}" for m, t, g in synth.movies) + "\n"
        (directory / "movies.dat").write_bytes(dat.encode("latin-1"))
    elif layout == "csv":
        ratings = ["userId,movieId,rating,timestamp", *(f"{u},{m},{s}.0,{t}" for u, m, s, t in r)]
        (directory / "ratings.csv").write_text("\n".join(ratings) + "\n")
        movies = ["movieId,title,genres", *(f'{m},"{t}",{g}' for m, t, g in synth.movies)]
        (directory / "movies.csv").write_text("\n".join(movies) + "\n", encoding="utf-8")
    elif layout == "recbole":
        inter = [
            "user_id:token\titem_id:token\trating:float\ttimestamp:float",
            *(f"{u}\t{m}\t{s}\t{t}" for u, m, s, t in r),
        ]
        (directory / "ml-100k.inter").write_text("\n".join(inter) + "\n")
        items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
        for movie_id, title, genres in synth.movies:
            name, year = title[:-7], title[-5:-1]
            items.append(f"{movie_id}\t{name}\t{year}\t{genres.replace('|', ' ')}")
        (directory / "ml-100k.item").write_text("\n".join(items) + "\n")
    else:
        raise ValueError(layout)
    return directory
