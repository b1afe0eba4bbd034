"""Calling an exported candidate tower as the service does: it takes movie_id and title, and genres ("A|B") only
when the version was trained with candidate_genres, so the inputs follow the SavedModel's own signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf


def candidate_tower_embeddings(version_dir: Path, movies: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """float32 [len(movies), d]: version_dir's candidate SavedModel on movies.json-style records
    ({"movie_id", "title", "genres": [str]})."""
    fn = tf.saved_model.load(str(version_dir / "candidate_model")).signatures["serving_default"]
    columns = {
        "movie_id": [m["movie_id"] for m in movies],
        "title": [m["title"] for m in movies],
        "genres": ["|".join(m["genres"]) for m in movies],
    }
    inputs = {name: tf.constant(columns[name]) for name in fn.structured_input_signature[1]}
    return fn(**inputs)["embedding"].numpy()  # type: ignore[no-any-return]
