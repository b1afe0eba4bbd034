"""Hand-built version directories that follow models/README.md exactly, plus a NumPy oracle of their towers.

Building one takes about a second (no training), so tests can make as many versions as they need:
good ones to swap between, corrupted or half-written ones to be refused.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scann  # ScaNN first, as the service does
import tensorflow as tf

import service  # noqa: F401  # sets the TensorFlow/BLAS environment before TensorFlow is imported
from contract.checksums import file_checksums
from contract.manifest import DataInfo, IndexInfo, Manifest, Metrics, QueryInfo

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]
RARE_GENRE = "Documentary"  # on exactly two movies, so a filter on it exhausts the catalogue
TIME_ORIGIN = 880_000_000
TIME_END = TIME_ORIGIN + 10_000_000  # the training time range; the towers clamp queries into it
TIME_SCALE = 1e7
RATING_GAP = 200_000  # a user's i-th rating is at TIME_ORIGIN + (i + 1) * RATING_GAP
HISTORY_LENGTH = 5


@dataclass(frozen=True)
class Oracle:
    """What a built version's towers compute, in NumPy, to check served answers against."""

    user_ids: list[str]
    user_table: np.ndarray  # float32 [num_users + 1, d]; row 0 is every unknown user
    time_direction: np.ndarray  # float32 [d]
    candidate_embeddings: np.ndarray  # float32 [num_movies, d]
    movies: list[dict[str, Any]]
    seen: dict[str, list[int]]  # user_id -> movie rows rated in training, oldest first
    popularity: np.ndarray  # movie rows, most rated first

    def history(self, user_id: str, timestamp: int) -> list[str]:
        """movie_ids the user rated strictly before `timestamp`, newest first, at most HISTORY_LENGTH."""
        rows = [row for i, row in enumerate(self.seen.get(user_id, [])) if rated_at(i) < timestamp]
        return [self.movies[row]["movie_id"] for row in rows[::-1][:HISTORY_LENGTH]]

    def query(self, user_id: str, timestamp: int, history: list[str] | None = None) -> np.ndarray:
        """user vector + clamped time offset x direction + mean candidate embedding of the history."""
        index = self.user_ids.index(user_id) + 1 if user_id in self.user_ids else 0
        history = self.history(user_id, timestamp) if history is None else history[:HISTORY_LENGTH]
        clamped = min(max(timestamp, TIME_ORIGIN), TIME_END)
        offset = np.float32(clamped - TIME_ORIGIN) / np.float32(TIME_SCALE)
        rows = [int(movie_id) - 1 for movie_id in history]
        mean = self.candidate_embeddings[rows].mean(axis=0) if rows else 0.0
        return self.user_table[index] + offset * self.time_direction + mean

    def top_k(
        self,
        user_id: str,
        timestamp: int,
        k: int,
        exclude_rows: set[int] = frozenset(),  # type: ignore[assignment]
        genres: set[str] | None = None,
        history: list[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Brute-force top-k (movie_id, score) over every allowed movie."""
        scores = self.candidate_embeddings @ self.query(user_id, timestamp, history)
        allowed = [
            row
            for row, movie in enumerate(self.movies)
            if row not in exclude_rows and (genres is None or genres & set(movie["genres"]))
        ]
        best = sorted(allowed, key=lambda row: -scores[row])[:k]
        return [(self.movies[row]["movie_id"], float(scores[row])) for row in best]

    def seen_rows(self, user_id: str) -> set[int]:
        return set(self.seen.get(user_id, []))


def rated_at(i: int) -> int:
    """When a factory user rated their i-th movie."""
    return TIME_ORIGIN + (i + 1) * RATING_GAP


class _QueryTower(tf.Module):
    def __init__(self, oracle: "Oracle") -> None:
        super().__init__()
        self.lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(oracle.user_ids), tf.range(1, len(oracle.user_ids) + 1, dtype=tf.int64)
            ),
            default_value=0,
        )
        movie_ids = [m["movie_id"] for m in oracle.movies]
        self.movie_lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(movie_ids), tf.range(1, len(movie_ids) + 1, dtype=tf.int64)
            ),
            default_value=0,
        )
        self.table = tf.Variable(oracle.user_table)
        self.direction = tf.Variable(oracle.time_direction)
        padded = np.concatenate(
            [np.zeros((1, oracle.candidate_embeddings.shape[1]), np.float32), oracle.candidate_embeddings]
        )
        self.movie_table = tf.Variable(padded)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, "user_id"),
            tf.TensorSpec([None], tf.int64, "timestamp"),
            tf.TensorSpec([None, HISTORY_LENGTH], tf.string, "history"),
        ]
    )
    def serve(self, user_id: tf.Tensor, timestamp: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        clamped = tf.clip_by_value(timestamp, TIME_ORIGIN, TIME_END)
        offset = tf.cast(clamped - TIME_ORIGIN, tf.float32) / TIME_SCALE
        rows = self.movie_lookup.lookup(history)
        count = tf.reduce_sum(tf.cast(rows > 0, tf.float32), axis=1, keepdims=True)
        mean = tf.reduce_sum(tf.gather(self.movie_table, rows), axis=1) / tf.maximum(count, 1.0)
        user = tf.gather(self.table, self.lookup.lookup(user_id))
        return {"embedding": user + offset[:, None] * self.direction + mean}


class _CandidateTower(tf.Module):
    def __init__(self, movie_ids: list[str], embeddings: np.ndarray) -> None:
        super().__init__()
        self.lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(movie_ids), tf.range(len(movie_ids), dtype=tf.int64)),
            default_value=0,
        )
        self.table = tf.Variable(embeddings)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, "movie_id"),
            tf.TensorSpec([None], tf.string, "title"),
        ]
    )
    def serve(self, movie_id: tf.Tensor, title: tf.Tensor) -> dict[str, tf.Tensor]:
        del title  # part of the contract's signature; this stand-in tower ignores it
        return {"embedding": tf.gather(self.table, self.lookup.lookup(movie_id))}


def _make_oracle(seed: int, num_users: int, num_movies: int, dim: int, titles: dict[int, str]) -> Oracle:
    rng = np.random.default_rng(seed)
    movies = []
    for row in range(num_movies):
        genres = sorted(set(rng.choice(GENRES, size=int(rng.integers(1, 3))).tolist()))
        if row in (3, 7):
            genres.append(RARE_GENRE)
        title = titles.get(row, f"Movie {row + 1} (199{row % 10})")
        movies.append({"movie_id": str(row + 1), "title": title, "genres": genres})
    user_ids = [str(u + 1) for u in range(num_users)]
    seen = {u: sorted(rng.choice(num_movies, size=int(rng.integers(2, 8)), replace=False).tolist()) for u in user_ids}
    # The last user has seen all but five movies, so excluding seen movies exhausts the catalogue.
    seen[user_ids[-1]] = list(range(5, num_movies))
    counts = np.bincount([row for rows in seen.values() for row in rows], minlength=num_movies)
    return Oracle(
        user_ids=user_ids,
        user_table=rng.normal(size=(num_users + 1, dim)).astype(np.float32),
        time_direction=rng.normal(size=dim).astype(np.float32),
        candidate_embeddings=rng.normal(size=(num_movies, dim)).astype(np.float32),
        movies=movies,
        seen=seen,
        popularity=np.argsort(-counts, kind="stable").astype(np.int32),
    )


def _write_searcher(path: Path, embeddings: np.ndarray) -> None:
    searcher = scann.scann_ops_pybind.builder(embeddings, 10, "dot_product").score_brute_force().build()
    path.mkdir()
    searcher.serialize(str(path), relative_path=True)


def _write_seen(path: Path, oracle: Oracle) -> None:
    user_ids = sorted(oracle.seen)
    rows = [oracle.seen[u] for u in user_ids]
    np.savez(
        path,
        user_ids=np.array(user_ids),
        indptr=np.cumsum([0] + [len(r) for r in rows]).astype(np.int64),
        movie_rows=np.array([m for r in rows for m in r], dtype=np.int32),
        timestamps=np.array([rated_at(i) for r in rows for i in range(len(r))], dtype=np.int64),
    )


def write_manifest(version_dir: Path) -> None:
    """(Re)write manifest.json with the sha256 of every other file, as the exporter does, last."""
    oracle_dim = int(np.load(version_dir / "candidate_embeddings.npy").shape[1])
    num_movies = len(json.loads((version_dir / "movies.json").read_text()))
    table = {"top_10": 0.5, "top_100": 0.9}
    manifest = Manifest(
        version=version_dir.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config={"layers": [oracle_dim], "embedding_dim": oracle_dim, "builder": "tests/service/version_factory"},
        data=DataInfo(
            dataset="synthetic",
            fingerprint="0" * 64,
            layout="synthetic",
            num_ratings=0,
            num_users=0,
            num_movies=num_movies,
            timestamp_min=TIME_ORIGIN,
            timestamp_max=TIME_END,
        ),
        library_versions={"tensorflow": tf.__version__, "numpy": np.__version__},
        metrics=Metrics(model={"B": table}, most_popular={"B": table}, split="random", test_size=0),
        index=IndexInfo(kind="brute_force", recall_k=100, recall=1.0, num_movies=num_movies),
        query=QueryInfo(history_length=HISTORY_LENGTH, timestamp_min=TIME_ORIGIN, timestamp_max=TIME_END),
        embedding_dim=oracle_dim,
        files=file_checksums(version_dir),
    )
    (version_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2))


def build_version(
    models_dir: Path,
    name: str,
    *,
    seed: int = 0,
    num_users: int = 20,
    num_movies: int = 40,
    dim: int = 8,
    make_current: bool = True,
    titles: dict[int, str] | None = None,
) -> Oracle:
    """Write models_dir/name/ per the contract (manifest last) and optionally point CURRENT at it.

    `titles` replaces the default title ("Movie 3 (1992)") of the movies at those rows.
    """
    oracle = _make_oracle(seed, num_users, num_movies, dim, titles or {})
    version_dir = models_dir / name
    version_dir.mkdir(parents=True)
    tower = _QueryTower(oracle)
    tf.saved_model.save(tower, str(version_dir / "query_model"), signatures={"serving_default": tower.serve})
    candidates = _CandidateTower([m["movie_id"] for m in oracle.movies], oracle.candidate_embeddings)
    tf.saved_model.save(
        candidates, str(version_dir / "candidate_model"), signatures={"serving_default": candidates.serve}
    )
    np.save(version_dir / "candidate_embeddings.npy", oracle.candidate_embeddings)
    _write_searcher(version_dir / "scann", oracle.candidate_embeddings)
    (version_dir / "movies.json").write_text(json.dumps(oracle.movies))
    _write_seen(version_dir / "seen.npz", oracle)
    np.save(version_dir / "popularity.npy", oracle.popularity)
    (version_dir / "training_history.json").write_text(json.dumps({"loss": [1.0, 0.5]}))
    write_manifest(version_dir)
    if make_current:
        write_current(models_dir, name)
    return oracle


def write_current(models_dir: Path, name: str) -> None:
    """Point CURRENT at a version the way the exporter does: temp file, then atomic rename."""
    tmp = models_dir / "CURRENT.tmp"
    tmp.write_text(name + "\n")
    tmp.replace(models_dir / "CURRENT")
