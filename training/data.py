"""Reads MovieLens in any GroupLens or RecBole layout into two checked, vectorised tables."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contract.ratings import RatingColumns

# u.item carries 19 genre flags in this order (u.genre in the GroupLens archive).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


class DataError(ValueError):
    """The data on disk cannot be used; the message names the file (and line) and what to do."""


@dataclass(frozen=True)
class MovieLens:
    """Ratings and movies keyed by integer ids (strings only at the model boundary, to keep ML-25M small).

    ratings: user_id int64, movie_id int64, rating float32, timestamp int64 — one row per rating.
    movies:  movie_id int64 (unique), title str ("Toy Story (1995)"), genres str ("Animation|Comedy").
    """

    ratings: pd.DataFrame
    movies: pd.DataFrame
    layout: str
    fingerprint: str  # sha256 over the source files, so a manifest says exactly which data it saw
    ratings_cutoff_id: int = 0  # stored ratings with id <= this were added (0: none)
    num_stored: int = 0  # how many ratings came from the ratings store; they carry a stored_id column
    catalogue_cutoff_id: int = 0  # catalogue store changes with id <= this were applied (0: none)


def detect_layout(directory: Path) -> str | None:
    """Names the layout of `directory` from the files it holds, or None if it holds no MovieLens."""
    if (directory / "u.data").is_file() and (directory / "u.item").is_file():
        return "ml-100k"
    if (directory / "ratings.dat").is_file() and (directory / "movies.dat").is_file():
        return "dat"
    if (directory / "ratings.csv").is_file() and (directory / "movies.csv").is_file():
        return "csv"
    if any(directory.glob("*.inter")) and any(directory.glob("*.item")):
        return "recbole"
    return None


def resolve_data_dir(data_dir: Path, dataset: str) -> Path:
    """Finds the MovieLens files: `data_dir` itself, `data_dir/<dataset>`, or its only dataset subfolder."""
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist; run "
            f"`python -m training fetch --dataset {dataset} --data-dir {data_dir}` first"
        )
    for candidate in (data_dir, data_dir / dataset):
        if candidate.is_dir() and detect_layout(candidate):
            return candidate
    found = [sub for sub in sorted(data_dir.iterdir()) if sub.is_dir() and detect_layout(sub)]
    if len(found) == 1:
        return found[0]
    raise DataError(
        f"no MovieLens files in {data_dir} (expected u.data+u.item, ratings.dat+movies.dat, "
        f"ratings.csv+movies.csv or *.inter+*.item); run "
        f"`python -m training fetch --dataset {dataset} --data-dir {data_dir}`"
    )


def load_movielens(data_dir: Path, dataset: str = "ml-100k") -> MovieLens:
    """Loads and checks a MovieLens directory in whichever supported layout it is.

    Raises:
        DataError: missing files, a malformed line (named by file and line), or inconsistent tables.
    """
    directory = resolve_data_dir(data_dir, dataset)
    layout = detect_layout(directory)
    if layout == "ml-100k":
        ratings_path, movies_path = directory / "u.data", directory / "u.item"
        ratings = _read_ratings(ratings_path, sep="\t", header=False)
        movies = _read_ml100k_movies(movies_path)
    elif layout == "dat":
        ratings_path, movies_path = directory / "ratings.dat", directory / "movies.dat"
        ratings = _read_ratings(ratings_path, sep="::", header=False)
        movies = _read_table(
            movies_path, sep="::", header=False, names=["movie_id", "title", "genres"], int_columns=["movie_id"]
        )
    elif layout == "csv":
        ratings_path, movies_path = directory / "ratings.csv", directory / "movies.csv"
        ratings = _read_ratings(ratings_path, sep=",", header=True)
        movies = _read_table(
            movies_path, sep=",", header=True, names=["movie_id", "title", "genres"], int_columns=["movie_id"]
        )
    else:
        ratings_path = sorted(directory.glob("*.inter"))[0]
        movies_path = sorted(directory.glob("*.item"))[0]
        ratings = _read_ratings(ratings_path, sep="\t", header=True)
        movies = _read_recbole_movies(movies_path)
    movies = _clean_movies(movies, movies_path)
    _check_consistency(ratings, movies, ratings_path, movies_path)
    return MovieLens(
        ratings=ratings,
        movies=movies,
        layout=str(layout),
        fingerprint=_fingerprint([ratings_path, movies_path]),
    )


def _read_ratings(path: Path, sep: str, header: bool) -> pd.DataFrame:
    frame = _read_table(
        path,
        sep=sep,
        header=header,
        names=["user_id", "movie_id", "rating", "timestamp"],
        int_columns=["user_id", "movie_id", "timestamp"],
        float_columns=["rating"],
    )
    frame["rating"] = frame["rating"].astype(np.float32)
    return frame


def _read_table(
    path: Path,
    sep: str,
    header: bool,
    names: list[str],
    int_columns: list[str],
    float_columns: list[str] | None = None,
) -> pd.DataFrame:
    """Vectorised parse (pandas' C engine); on any failure, finds and names the first bad line."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    encoding = _encoding(raw)
    if len(sep) > 1:
        # The C engine takes one-character separators only; '::' files become tab-separated in memory.
        raw = raw.replace(sep.encode(), b"\t")
        sep = "\t"
    float_columns = float_columns or []
    dtypes = {name: "int64" for name in int_columns} | {name: "float64" for name in float_columns}
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep=sep,
            header=0 if header else None,
            names=names,
            dtype=dtypes,
            encoding=encoding,
            engine="c",
            quotechar='"',
            keep_default_na=False,
            na_values=[""],
            usecols=range(len(names)) if len(names) else None,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        line, why = _first_bad_line(raw.decode(encoding), sep, names, int_columns, float_columns, header)
        raise DataError(f"{path}, line {line}: {why}") from exc
    if frame[[*int_columns, *float_columns]].isna().any().any():
        line, why = _first_bad_line(raw.decode(encoding), sep, names, int_columns, float_columns, header)
        raise DataError(f"{path}, line {line}: {why}")
    text_columns = [name for name in names if name not in dtypes]
    frame[text_columns] = frame[text_columns].fillna("")
    return frame


def _first_bad_line(
    text: str, sep: str, names: list[str], int_columns: list[str], float_columns: list[str], header: bool
) -> tuple[int, str]:
    """Slow path, only after a failed parse: walks the lines to say exactly where and why."""
    quoted = sep == ","
    for number, line in enumerate(text.splitlines(), start=1):
        if (header and number == 1) or not line.strip():
            continue
        fields = _split_csv_line(line) if quoted else line.split(sep)
        if len(fields) != len(names):
            return number, f"expected {len(names)} fields ({', '.join(names)}), found {len(fields)}"
        for name, value in zip(names, fields, strict=False):
            if name in int_columns and not re.fullmatch(r"\s*-?\d+\s*", value):
                return number, f"{name} must be an integer, found {value!r}"
            if name in float_columns:
                try:
                    float(value)
                except ValueError:
                    return number, f"{name} must be a number, found {value!r}"
    return 0, "the file could not be parsed"


def _split_csv_line(line: str) -> list[str]:
    import csv

    return next(csv.reader([line]))


def _encoding(raw: bytes) -> str:
    """GroupLens ml-100k/ml-1m are latin-1; the newer files are UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _read_ml100k_movies(path: Path) -> pd.DataFrame:
    flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
    names = ["movie_id", "title", "release_date", "video_release_date", "imdb_url", *flags]
    frame = _read_table(path, sep="|", header=False, names=names, int_columns=["movie_id", *flags])
    genre_names = np.array(ML100K_GENRES, dtype=object)
    flag_matrix = frame[flags].to_numpy(dtype=bool)
    genres = ["|".join(genre_names[row]) for row in flag_matrix]
    return pd.DataFrame({"movie_id": frame["movie_id"], "title": frame["title"], "genres": genres})


def _read_recbole_movies(path: Path) -> pd.DataFrame:
    """RecBole splits the year off the title; MovieLens writes "Toy Story (1995)", so we put it back."""
    frame = _read_table(
        path, sep="\t", header=True, names=["movie_id", "title", "year", "genres"], int_columns=["movie_id"]
    )
    year = frame["year"].astype(str).str.strip()
    title = frame["title"].astype(str).str.strip()
    frame["title"] = np.where(year != "", title + " (" + year + ")", title)
    frame["genres"] = frame["genres"].astype(str).str.split().str.join("|")
    return frame[["movie_id", "title", "genres"]]


def _clean_movies(movies: pd.DataFrame, path: Path) -> pd.DataFrame:
    movies = movies[["movie_id", "title", "genres"]].copy()
    movies["title"] = movies["title"].astype(str).str.strip()
    movies["genres"] = movies["genres"].astype(str).replace("(no genres listed)", "")
    duplicated = movies["movie_id"].duplicated()
    if duplicated.any():
        raise DataError(f"{path}: movie_id {int(movies['movie_id'][duplicated].iloc[0])} appears twice")
    return movies.sort_values("movie_id", kind="stable").reset_index(drop=True)


def _check_consistency(ratings: pd.DataFrame, movies: pd.DataFrame, ratings_path: Path, movies_path: Path) -> None:
    if ratings.empty:
        raise DataError(f"{ratings_path}: no ratings")
    unknown = ~ratings["movie_id"].isin(movies["movie_id"])
    if unknown.any():
        example = int(ratings["movie_id"][unknown].iloc[0])
        raise DataError(
            f"{ratings_path}: {int(unknown.sum())} ratings name movies missing from {movies_path} "
            f"(e.g. movie_id {example})"
        )


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def with_stored_ratings(data: MovieLens, stored: RatingColumns, cutoff_id: int) -> MovieLens:
    """The files' ratings plus the ones the service stored, up to `cutoff_id`, each with its `stored_id`.

    The service accepts only numeric ids (up to 18 digits, so int64 holds them) and catalogue movies;
    anything else (written to the database by hand, say) is skipped rather than failing a retraining cycle.
    """
    user_ids = np.asarray(stored.user_id, dtype=str)
    movie_ids = np.asarray(stored.movie_id, dtype=str)
    numeric = (
        np.char.isdigit(user_ids)
        & (np.char.str_len(user_ids) <= 18)
        & np.char.isdigit(movie_ids)
        & (np.char.str_len(movie_ids) <= 18)
    )
    frame = pd.DataFrame(
        {
            "user_id": user_ids[numeric].astype(np.int64),
            "movie_id": movie_ids[numeric].astype(np.int64),
            "rating": stored.rating[numeric].astype(np.float32),
            "timestamp": stored.timestamp[numeric].astype(np.int64),
            "stored_id": stored.id[numeric].astype(np.int64),
        }
    )
    frame = frame[frame["movie_id"].isin(data.movies["movie_id"])]
    ratings = data.ratings.assign(stored_id=np.int64(0))
    merged = pd.concat([ratings, frame], ignore_index=True)
    return dataclasses.replace(data, ratings=merged, ratings_cutoff_id=cutoff_id, num_stored=len(frame))
