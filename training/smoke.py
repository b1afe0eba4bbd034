"""The gate's smoke query, run as `python -m training.smoke VERSION_DIR --k K` in a fresh process.

It loads a candidate the way a starting server does (`import scann`, the query_model SavedModel, the ScaNN
searcher) and queries it with real training users; a crash inside TensorFlow or ScaNN ends this process,
not the retraining job. It prints its figures as one JSON line.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from training.gate import Figure, SmokeError, lookup, read_manifest

# Users per smoke batch: enough for a stable recall figure, small enough to stay well under a second.
SMOKE_USERS = 256


def smoke(version_dir: Path, k: int) -> dict[str, Figure]:
    """Load query_model and the ScaNN searcher, query a batch of training users, check every answer."""
    started = time.perf_counter()
    import numpy as np
    import scann  # registers ScaNN's TensorFlow ops before anything loads them
    import tensorflow as tf

    from training.index import recall_at_k

    manifest = read_manifest(version_dir)
    candidates = np.load(version_dir / "candidate_embeddings.npy")
    num_movies, dim = candidates.shape
    known = np.load(version_dir / "seen.npz")["user_ids"]
    users = known[np.unique(np.linspace(0, len(known) - 1, min(len(known), SMOKE_USERS)).astype(int))]
    timestamp = int(lookup(manifest, "data", "timestamp_max") or time.time())

    serve = tf.saved_model.load(str(version_dir / "query_model")).signatures["serving_default"]
    out = serve(
        user_id=tf.constant([str(u) for u in users]), timestamp=tf.constant([timestamp] * len(users), dtype=tf.int64)
    )
    embeddings = out["embedding"].numpy().astype(np.float32)
    if embeddings.shape != (len(users), dim):
        raise SmokeError(f"query embeddings have shape {embeddings.shape}, expected {(len(users), dim)}")
    if not np.isfinite(embeddings).all():
        raise SmokeError("query embeddings are not all finite")

    searcher = scann.scann_ops_pybind.load_searcher(str(version_dir / "scann"))
    neighbours, distances = searcher.search_batched(embeddings, final_num_neighbors=k)
    if neighbours.shape != (len(users), k):
        raise SmokeError(f"searcher returned {neighbours.shape} neighbours, expected {(len(users), k)}")
    if not np.isfinite(distances).all():
        raise SmokeError("searcher returned non-finite scores")
    if neighbours.min() < 0 or neighbours.max() >= num_movies:
        raise SmokeError(f"neighbour ids outside [0, {num_movies})")
    if any(len(set(row.tolist())) != k for row in neighbours):
        raise SmokeError("a user got the same movie twice")

    recall = recall_at_k(searcher, candidates, embeddings)
    return {
        "users": len(users),
        "embedding_dim": int(dim),
        "neighbours": k,
        "recall_at_100": round(recall, 4),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Smoke-query one version directory; print its figures as JSON, or the failure on stderr and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m training.smoke", description=main.__doc__)
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        figures = smoke(args.version_dir, args.k)
    except Exception as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
