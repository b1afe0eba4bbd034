"""What a version directory holds and what its manifest.json says, written once for both sides.

`training` writes versions with these names and this model; `service` (and the gate) read them back with the
same model, so a field added here is added for both. models/README.md documents the same layout for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# Every entry of a version directory besides the manifest; a directory entry holds several files.
QUERY_MODEL = "query_model"  # SavedModel: user_id, timestamp [, history string [batch, H]] -> embedding
CANDIDATE_MODEL = "candidate_model"  # SavedModel: movie_id, title (, genres) string [batch] -> embedding
CANDIDATE_EMBEDDINGS = "candidate_embeddings.npy"  # float32 [num_movies, d], row i = movies.json[i]
# ScaNN searcher (dot product, relative asset paths) over the served candidates: candidate_embeddings, then the
# rating term's item part where the version has one (contract/rating_model.py served_candidates)
SCANN = "scann"
MOVIES = "movies.json"  # [{"movie_id", "title", "genres"}], the catalogue in row order
SEEN = "seen.npz"  # each known user's ratings, oldest first, CSR: user_ids, indptr, movie_rows, timestamps
POPULARITY = "popularity.npy"  # int32 movie rows, most rated first (the unknown-user fallback)
TRAINING_HISTORY = "training_history.json"  # per-epoch loss and held-out figures
TRAINING_CURVE = "training_curve.png"  # held-out top-100 accuracy against epoch
QUERY_WEIGHTS = "query_weights.npz"  # the query tower as arrays, served in NumPy once it equals query_model
# float32 [num_movies, d - item_item_dim]: each movie through candidate_model with its movie_id blanked (""), the
# columns before the item-to-item channel. A movie nobody rated is placed by its content alone and reads the
# one unknown id, so /similar compares it with every movie's content read the same way (like with like).
CONTENT_EMBEDDINGS = "content_embeddings.npy"
# The rating term (contract/rating_model.py): item biases and factors, the fit's ridge weight and mean, the term's
# weight and the covariances that scale it; required when the manifest's rating_width is above 0.
RATING_MODEL = "rating_model.npz"
# What a server needs to answer; the training history and curve are for people (the page's model card).
REQUIRED_ENTRIES = (QUERY_MODEL, CANDIDATE_MODEL, CANDIDATE_EMBEDDINGS, SCANN, MOVIES, SEEN, POPULARITY)
# query_weights.npz is optional: without it (a version from before it existed) the server calls query_model;
# without content_embeddings.npy /similar reads a movie's content columns from candidate_embeddings.npy.
OPTIONAL_ENTRIES = (TRAINING_HISTORY, TRAINING_CURVE, QUERY_WEIGHTS, CONTENT_EMBEDDINGS, RATING_MODEL)

Table = dict[str, float]  # {"top_1": 0.01, ..., "top_100": 0.4}


class VersionError(ValueError):
    """A version directory breaks the contract (manifest, files or contents); the message says what and where."""


class _Part(BaseModel):
    # Parts tolerate fields added by a later writer; the format version guards incompatible changes.
    model_config = ConfigDict(extra="allow", frozen=True)


class DataInfo(_Part):
    """Which ratings the version was trained on."""

    dataset: str
    fingerprint: str = Field(description="sha256 over the source files")
    layout: str
    num_ratings: int = Field(ge=0)
    num_users: int = Field(ge=0, description="distinct users in the data (train and held-out)")
    num_movies: int = Field(ge=0)
    timestamp_min: int
    timestamp_max: int
    ratings_cutoff_id: int = Field(0, ge=0, description="stored ratings with id <= this are in the data")
    num_stored_ratings: int = Field(0, ge=0, description="how many of num_ratings came from the ratings store")
    catalogue_cutoff_id: int = Field(0, ge=0, description="catalogue store changes with id <= this are in the data")


class QueryInfo(_Part):
    """What the query tower takes: how much history, and the time range it clamps timestamps to."""

    history_length: int = Field(ge=0, description="movie ids in the history input; 0: no history input")
    history_ratings: bool = Field(
        False, description="the tower also takes history_rating, float32 [batch, history_length]: each movie's stars"
    )
    history_min_rating: float = Field(
        0.0,
        ge=0,
        le=5,
        description="ratings below this many stars are not read as history (contract.user_ratings.read_as_taste); "
        "0: every rating",
    )
    timestamp_min: int = Field(description="earliest training timestamp; earlier queries are clamped to it")
    timestamp_max: int = Field(description="latest training timestamp; later queries (now) are clamped to it")


class HoldOutInfo(_Part):
    """Which ratings protocol T held out: the latest share by time, or the stored ratings after an id."""

    how: Literal["latest", "after_id"]
    after_id: int = Field(0, ge=0, description="with how=after_id: stored ratings with id > this")
    test_size: int = Field(ge=0)


class Metrics(_Part):
    """Offline top-k accuracy of the model and of most-popular, per protocol ("A", "B", "T")."""

    model: dict[str, Table]
    most_popular: dict[str, Table]
    split: str = Field(description="the split of protocols A and B")
    test_size: int = Field(ge=0, description="held-out ratings scored under A and B")
    temporal: HoldOutInfo | None = Field(None, description="what protocol T held out, when it was measured")


class IndexParams(_Part):
    """ScaNN tree + asymmetric-hashing settings; empty for brute force."""

    num_leaves: int | None = Field(default=None, ge=1)
    num_leaves_to_search: int | None = Field(default=None, ge=1)
    training_sample_size: int | None = Field(default=None, ge=1)
    dimensions_per_block: int | None = Field(default=None, ge=1)
    anisotropic_quantization_threshold: float | None = None
    reorder: int | None = Field(default=None, ge=1)


class IndexInfo(_Part):
    """The searcher in scann/: its kind, the settings it was built with and its measured recall."""

    kind: Literal["brute_force", "tree_ah"]
    params: IndexParams = Field(default_factory=IndexParams)
    recall_k: int = Field(ge=1, description="k of the recall figure")
    recall: float = Field(ge=0, le=1, description="recall@recall_k against brute force on held-out queries")
    num_movies: int = Field(ge=0)
    build_seconds: float | None = Field(None, ge=0, description="wall time to build the searcher")
    size_bytes: int | None = Field(None, ge=0, description="bytes of the serialised searcher (scann/)")
    query_ms_p50: float | None = Field(None, ge=0, description="one query at a time, recall_k deep, one thread")
    query_ms_p99: float | None = Field(None, ge=0, description="as query_ms_p50, the 99th percentile")


class Manifest(BaseModel):
    """manifest.json: written last by the exporter, so a directory without it is not a version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1  # FORMAT_VERSION; a reader refuses any other
    version: str
    created_at: str
    config: dict[str, Any] = Field(description="the training configuration, verbatim")
    data: DataInfo
    library_versions: dict[str, str]
    metrics: Metrics
    index: IndexInfo
    query: QueryInfo
    embedding_dim: int = Field(ge=1)
    item_item_dim: int = Field(
        0,
        ge=0,
        description="the embeddings' last columns that are the item-to-item channel: a movie's own id vector and "
        "its EASE prior row, the same out-of-vocabulary vector (prior: zeros) for every movie the version never "
        "trained on (0: none, or an older version)",
    )
    item_item_prior: int = Field(
        0,
        ge=0,
        description="the last of the item_item_dim columns that are the EASE prior (training/item_item_prior.py): "
        "a movie nobody rated has zeros there, and the service lends an added movie its content neighbours' rows "
        "(service/borrowed_prior.py); 0: no prior, or an older version",
    )
    rating_width: int = Field(
        0,
        ge=0,
        description="columns the rating term (contract/rating_model.py, layout.RATING_MODEL) appends to the served "
        "query and candidate vectors past embedding_dim, which the index searches; 0: none, or an older version",
    )
    files: dict[str, str] = Field(min_length=1, description="relative POSIX path -> sha256, every file but this")

    @model_validator(mode="after")
    def _channel_fits(self) -> Manifest:
        if self.item_item_dim >= self.embedding_dim:
            raise ValueError(f"item_item_dim {self.item_item_dim} leaves none of the {self.embedding_dim} columns")
        if self.item_item_prior > self.item_item_dim:
            raise ValueError(f"item_item_prior {self.item_item_prior} exceeds item_item_dim {self.item_item_dim}")
        return self


def read_manifest(version_dir: Path) -> Manifest:
    """Parse and validate `version_dir/manifest.json`.

    Raises:
        VersionError: missing (an incomplete version), not JSON, or not this contract's shape.
    """
    path = version_dir / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VersionError(
            f"version {version_dir.name!r} has no {MANIFEST}: it is incomplete (the exporter writes it last)"
        ) from None
    except OSError as error:
        raise VersionError(f"version {version_dir.name!r}: cannot read {MANIFEST} ({error.strerror})") from None
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in error.errors())
        raise VersionError(
            f"version {version_dir.name!r}: {MANIFEST} does not follow the contract ({problems})"
        ) from None


def write_manifest(version_dir: Path, manifest: Manifest) -> None:
    """Write manifest.json (the caller makes the directory visible only afterwards)."""
    (version_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
