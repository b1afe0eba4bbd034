"""Benchmark: how the reasons of a served version read (service/reasons.py, /recommend?explain=true).

For every known user of the version, at now, the top 10 as /recommend answers it (seen movies excluded, the
version's exact scores) with its reasons. A person reads a reason as "you liked this, so you may like that",
so the measure is how often a named movie shares a genre with the movie it explains, by the reason's
position, against the same for any movie of the history the query read; and how often the first reason is
one of the user's four newest ratings (the query tower weighs them most). Writes
benchmarks/results/reasons.json.

    python benchmarks/reasons.py --version-dir models/<version>
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import typer

from benchmarks.machine import machine
from service.artifacts import load_version
from service.reasons import MAX_REASONS, reasons


def main(
    version_dir: Annotated[Path, typer.Option(help="A version directory (models/<version>).")],
    k: Annotated[int, typer.Option()] = 10,
    out: Annotated[Path, typer.Option()] = Path("benchmarks/results/reasons.json"),
) -> None:
    import scann  # noqa: F401  (the version's searcher needs its ops)

    version = load_version(version_dir, max_batch=64, min_recall=0.5)
    now = int(time.time())
    counts: list[int] = []
    by_position: dict[int, list[bool]] = {position: [] for position in range(MAX_REASONS)}
    any_history: list[bool] = []
    newest_four: list[bool] = []  # the first reason is among the four newest movies of the history

    def genres_of(movie_id: str) -> set[str]:
        return set(version.movies[version.row_of_movie[movie_id]]["genres"])

    for user_id in version.user_rows:
        rows_rated, times, values = version.ratings_of(user_id)
        history, stars = version.history_at(rows_rated, times, values, now + 1)
        tower = version.embed([user_id], [now], [history], [stars])
        query = version.served_queries(tower, [version.rating_part(rows_rated, times, values, now + 1)])[0]
        scores = version.served_candidates @ query
        scores[rows_rated] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        answered = reasons(version, user_id, now, history, stars, query, top)
        for row, named in zip(top.tolist(), answered, strict=True):
            genres = set(version.movies[row]["genres"])
            counts.append(len(named))
            if named:
                newest_four.append(named[0]["movie_id"] in history[:4])
            for position, reason in enumerate(named):
                by_position[position].append(bool(genres & genres_of(reason["movie_id"])))
            any_history.extend(bool(genres & genres_of(movie)) for movie in history[: version.history_length])
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "version": version.name,
        "users": len(version.user_rows),
        "k": k,
        "reasons_per_item": round(float(np.mean(counts)), 3),
        "reasons_sharing_a_genre": round(float(np.mean([x for shared in by_position.values() for x in shared])), 4),
        "by_position_sharing_a_genre": {
            str(position + 1): round(float(np.mean(shared)), 4) for position, shared in by_position.items() if shared
        },
        "any_history_movie_sharing_a_genre": round(float(np.mean(any_history)), 4),
        "first_reason_among_the_4_newest": round(float(np.mean(newest_four)), 4),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    typer.run(main)
