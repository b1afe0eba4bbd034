"""The title a candidate tower reads for a movie whose year none of its training titles names."""

from __future__ import annotations

import pytest

from contract.catalogue import title_year, title_year_within


def test_a_title_s_year_is_the_four_digits_it_ends_with() -> None:
    assert title_year("Toy Story (1995)") == 1995
    assert title_year("Scream 4 (2011)  ") == 2011
    assert title_year("Amityville 1992: It's About Time (1992)") == 1992
    assert title_year("Untitled") is None and title_year("1984") is None


@pytest.mark.parametrize(
    ("outside", "expected"),
    [("keep", "Scream 4 (2011)"), ("clamp", "Scream 4 (1998)"), ("drop", "Scream 4")],
)
def test_a_year_after_the_titles_is_kept_clamped_or_dropped(outside: str, expected: str) -> None:
    assert title_year_within("Scream 4 (2011)", 1922, 1998, outside) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("outside", ["keep", "clamp", "drop"])
def test_a_year_the_titles_name_and_a_title_without_one_are_read_as_they_are(outside: str) -> None:
    for title in ("Toy Story (1995)", "Nosferatu (1922)", "Titanic (1998)", "Untitled", "2001: A Space Odyssey"):
        assert title_year_within(title, 1922, 1998, outside) == title  # type: ignore[arg-type]
    if outside == "clamp":  # before the first year: the first
        assert title_year_within("The Birth of a Nation (1915)", 1922, 1998, outside) == "The Birth of a Nation (1922)"
