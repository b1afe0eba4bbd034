"""An added movie borrows its EASE prior row from the known movies whose content reads most like its own."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np

from service.artifacts import ModelVersion
from service.borrowed_prior import borrowed_rows, with_borrowed_prior

# Two planted families of known movies, far apart in content, each with its own prior row; one more movie
# reads like the first family but nobody rated it (a zero row: it has nothing to lend).
WESTERN, SPACE = np.array([1.0, 0.1, 0.0]), np.array([0.0, 0.1, 1.0])
KNOWN_CONTENT = np.stack([WESTERN, WESTERN * 2, SPACE, SPACE * 3, WESTERN]).astype(np.float32)
WESTERN_ROW, SPACE_ROW = np.array([1.0, -1.0]), np.array([-2.0, 4.0])
KNOWN_PRIOR = np.stack([WESTERN_ROW, WESTERN_ROW, SPACE_ROW, SPACE_ROW, np.zeros(2)]).astype(np.float32)


def test_an_added_movie_borrows_from_the_family_it_reads_like() -> None:
    added = np.stack([WESTERN * 5 + [0, 0, 0.05], SPACE]).astype(np.float32)
    rows = borrowed_rows(added, KNOWN_CONTENT, KNOWN_PRIOR, neighbours=2)
    np.testing.assert_allclose(rows[0], WESTERN_ROW, atol=1e-6)  # its two nearest lenders: both westerns
    np.testing.assert_allclose(rows[1], SPACE_ROW, atol=1e-6)


def test_neighbours_are_weighted_by_cosine_and_the_unlike_lend_nothing() -> None:
    between = (WESTERN + SPACE).astype(np.float32)[None]  # equally like both families
    np.testing.assert_allclose(
        borrowed_rows(between, KNOWN_CONTENT, KNOWN_PRIOR, neighbours=4)[0], (WESTERN_ROW + SPACE_ROW) / 2, atol=1e-6
    )
    opposite = -np.ones((1, 3), dtype=np.float32)  # a negative cosine with every lender
    np.testing.assert_array_equal(borrowed_rows(opposite, KNOWN_CONTENT, KNOWN_PRIOR, neighbours=4), 0)
    nobody = np.zeros_like(KNOWN_PRIOR)
    np.testing.assert_array_equal(borrowed_rows(between, KNOWN_CONTENT, nobody, neighbours=4), 0)
    np.testing.assert_array_equal(borrowed_rows(between, KNOWN_CONTENT, KNOWN_PRIOR, neighbours=0), 0)


def version(prior: int, content: np.ndarray | None) -> ModelVersion:
    """What with_borrowed_prior reads of a version: 3 content columns, 1 learned item-item column, the prior."""
    embeddings = np.concatenate([KNOWN_CONTENT, np.ones((5, 1)), KNOWN_PRIOR[:, :prior]], axis=1)
    manifest = SimpleNamespace(item_item_dim=1 + prior, item_item_prior=prior)
    return cast(
        ModelVersion,
        SimpleNamespace(manifest=manifest, content_embeddings=content, candidate_embeddings=embeddings, num_movies=5),
    )


def test_only_the_prior_columns_of_an_added_movie_change() -> None:
    tower_output = np.concatenate([SPACE, [0.7], [0.0, 0.0]]).astype(np.float32)[None]
    served = with_borrowed_prior(version(2, KNOWN_CONTENT), tower_output, neighbours=2)
    np.testing.assert_array_equal(served[0, :4], tower_output[0, :4])
    np.testing.assert_allclose(served[0, 4:], SPACE_ROW, atol=1e-6)
    np.testing.assert_array_equal(tower_output[0, 4:], 0)  # the tower's own answer is left as it was


def test_a_version_without_a_prior_or_content_embeddings_is_served_as_its_tower_says() -> None:
    tower_output = np.concatenate([SPACE, [0.7]]).astype(np.float32)[None]
    np.testing.assert_array_equal(with_borrowed_prior(version(0, KNOWN_CONTENT), tower_output, 2), tower_output)
    with_prior = np.concatenate([tower_output, np.zeros((1, 2), np.float32)], axis=1)
    np.testing.assert_array_equal(with_borrowed_prior(version(2, None), with_prior, 2), with_prior)
