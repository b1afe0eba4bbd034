"""`python -m service.smoke VERSION_DIR`: load a version with the server's own loader and query it once.

The promotion gate runs this in a fresh process, so a version it promotes is one a server accepts: the same
checksum and content checks, the same SavedModel and ScaNN loading, the same warm-up. It then asks a batch of
known users at the data's end and at now, checks every answer and prints its figures as one JSON line.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from contract.contents import recall_at_k
from contract.user_ratings import known_bound
from service.artifacts import ModelVersion, load_version
from service.config import Settings


class SmokeError(RuntimeError):
    """The version loaded but answered wrongly."""


def _check_answers(version: ModelVersion, queries: np.ndarray, k: int) -> np.ndarray:
    if not np.isfinite(queries).all():
        raise SmokeError("query embeddings are not all finite")
    rows, scores = version.search(queries, k)
    k = min(k, version.num_movies)
    if rows.shape != (len(queries), k):
        raise SmokeError(f"search returned {rows.shape} neighbours, expected {(len(queries), k)}")
    if not np.isfinite(scores).all():
        raise SmokeError("search returned non-finite scores")
    if rows.min() < 0 or rows.max() >= version.num_movies:
        raise SmokeError(f"neighbour rows outside [0, {version.num_movies})")
    if any(len(set(row.tolist())) != k for row in rows):
        raise SmokeError("a user got the same movie twice")
    return rows


def smoke(version_dir: Path, k: int, users: int) -> dict[str, float | int]:
    """Load `version_dir` as a server does, then query `users` known users at the data's end and at now."""
    started = time.perf_counter()
    version = load_version(version_dir, max_batch=users, min_recall=Settings().min_index_recall)
    known = list(version.user_rows)
    picked = [known[i] for i in np.unique(np.linspace(0, len(known) - 1, min(len(known), users)).astype(int))]
    recalls = []
    for moment in (version.manifest.data.timestamp_max, int(time.time())):
        bound = known_bound(moment, at_now=False)
        rated = [version.ratings_of(user) for user in picked]
        inputs = [version.history_at(*ratings, bound) for ratings in rated]
        histories, stars = [ids for ids, _ in inputs], [values for _, values in inputs]
        tower = version.embed(picked, [moment] * len(picked), histories, stars)
        queries = version.served_queries(tower, [version.rating_part(*ratings, bound) for ratings in rated])
        _check_answers(version, queries, k)
        found, _ = version.search(queries, version.manifest.index.recall_k)
        recalls.append(recall_at_k(found, version.served_candidates, queries, version.manifest.index.recall_k))
    return {
        "users": len(picked),
        "embedding_dim": int(version.candidate_embeddings.shape[1]),
        "neighbours": min(k, version.num_movies),
        "recall": round(min(recalls), 4),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Smoke-query one version directory; print its figures as JSON, or the failure on stderr and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m service.smoke", description=main.__doc__)
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--users", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        figures = smoke(args.version_dir, args.k, args.users)
    except Exception as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
