"""Layout detection, parsing and error messages of the MovieLens loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.synth import Synth, write_layout
from training.data import DataError, detect_layout, load_movielens

LAYOUTS = ["ml-100k", "dat", "csv", "recbole"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_the_same_tables(tmp_path: Path, synth: Synth, layout: str) -> None:
    directory = write_layout(synth, tmp_path / layout, layout)
    assert detect_layout(directory) == layout
    data = load_movielens(directory)
    expected = synth.ratings[np.lexsort((synth.ratings[:, 1], synth.ratings[:, 0]))]
    got = data.ratings.sort_values(["user_id", "movie_id"])[["user_id", "movie_id", "rating", "timestamp"]]
    np.testing.assert_array_equal(got.to_numpy(dtype=np.int64), expected)
    assert data.movies["movie_id"].tolist() == [m for m, _, _ in synth.movies]
    assert data.movies["title"].tolist() == [t for _, t, _ in synth.movies]  # year kept, latin-1 decoded
    assert data.movies["genres"].tolist() == [g for _, _, g in synth.movies]
    assert len(data.fingerprint) == 64


def test_movies_are_keyed_by_id_not_title(tmp_path: Path, synth: Synth) -> None:
    data = load_movielens(write_layout(synth, tmp_path / "d", "recbole"))
    same_title = data.movies[data.movies["title"] == "Chasing Amy (1997)"]
    assert same_title["movie_id"].tolist() == [7, 8]


def test_finds_the_dataset_subfolder(tmp_path: Path, synth: Synth) -> None:
    write_layout(synth, tmp_path / "ml-1m", "dat")
    assert load_movielens(tmp_path, "ml-1m").layout == "dat"
    assert load_movielens(tmp_path, "anything").layout == "dat"  # the only dataset there


def test_fingerprint_changes_with_the_data(tmp_path: Path, synth: Synth) -> None:
    first = load_movielens(write_layout(synth, tmp_path / "a", "csv")).fingerprint
    again = load_movielens(write_layout(synth, tmp_path / "b", "csv")).fingerprint
    with (tmp_path / "b" / "ratings.csv").open("a") as handle:
        handle.write("1,2,3.0,880000001\n")
    changed = load_movielens(tmp_path / "b").fingerprint
    assert first == again != changed


def _corrupt(path: Path, line_number: int, new_line: str) -> None:
    lines = path.read_text(encoding="latin-1").splitlines()
    lines[line_number - 1] = new_line
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


@pytest.mark.parametrize(
    ("layout", "file", "line", "bad", "message"),
    [
        ("ml-100k", "u.data", 5, "1\t2\tthree\t880000000", "rating must be a number"),
        ("ml-100k", "u.data", 7, "1\t2\t3", "expected 4 fields"),
        ("dat", "ratings.dat", 3, "x::2::3::880000000", "user_id must be an integer"),
        ("csv", "ratings.csv", 4, "1,2,3.0", "expected 4 fields"),
        ("recbole", "ml-100k.inter", 6, "1\t2\t3\tsoon", "timestamp must be an integer"),
    ],
)
def test_malformed_line_is_named(
    tmp_path: Path, synth: Synth, layout: str, file: str, line: int, bad: str, message: str
) -> None:
    directory = write_layout(synth, tmp_path / layout, layout)
    _corrupt(directory / file, line, bad)
    with pytest.raises(DataError, match=rf"{file}, line {line}: {message}"):
        load_movielens(directory)


def test_ratings_of_unknown_movies_are_refused(tmp_path: Path, synth: Synth) -> None:
    directory = write_layout(synth, tmp_path / "d", "csv")
    with (directory / "ratings.csv").open("a") as handle:
        handle.write("1,999,4.0,880000000\n")
    with pytest.raises(DataError, match=r"missing from .*movies\.csv .*movie_id 999"):
        load_movielens(directory)


def test_empty_and_missing_data_say_how_to_fetch(tmp_path: Path, synth: Synth) -> None:
    with pytest.raises(DataError, match="python -m training fetch"):
        load_movielens(tmp_path / "nowhere")
    with pytest.raises(DataError, match="python -m training fetch"):
        load_movielens(tmp_path)
    directory = write_layout(synth, tmp_path / "e", "ml-100k")
    (directory / "u.data").write_text("")
    with pytest.raises(DataError, match=r"u\.data: the file is empty"):
        load_movielens(directory)
