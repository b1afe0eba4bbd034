"""Benchmark: do the online metrics measure something real? Replay ML-100K's latest ratings through the API
against a strong CURRENT and a weak CANARY at share 0.5, then with the arms swapped.

Trains two versions on the earliest 80% of the ratings by time: a strong one (the default model from the
`first` preset's short fit) and a clearly weaker one (the TFRS tutorial's model, user id and timestamp
only, a few epochs). Serves them with `python -m service` (CURRENT and CANARY, RECSYS_CANARY_SHARE=0.5),
replays the latest 20% in time order (for each rating: GET /recommend for its user at its time, k=10, then
POST /ratings), and reports each arm's online figures from the impressions store, with 95% intervals, and
the canary rule's verdict (training/canary.py) on the canary. The server's memory is read before and after
the canary loads. Writes benchmarks/results/online_replay.json.

    python benchmarks/online_replay.py [--data-dir data] [--weak-epochs 3] [--limit N]
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import pandas as pd
import typer

from benchmarks.machine import machine
from contract.impressions import ImpressionStore, OnlineStats
from contract.pointers import CANARY, promote
from contract.ratings import RatingsStore
from training.canary import ArmFigures, CanaryConfig, judge
from training.config import build_config
from training.data import load_movielens
from training.train import train_versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "online_replay.json"
K = 10
Z = 1.96
WINDOW_SECONDS = 7 * 86_400


def write_early_part(data_dir: Path, out: Path, fraction: float) -> pd.DataFrame:
    """The earliest `fraction` of the ratings by time, as a GroupLens CSV dataset in `out`; returns the rest."""
    data = load_movielens(data_dir)
    ratings = data.ratings.sort_values(["timestamp"], kind="stable").reset_index(drop=True)
    cut = int(len(ratings) * fraction)
    out.mkdir(parents=True)
    early = ratings.iloc[:cut].rename(columns={"user_id": "userId", "movie_id": "movieId"})
    early.to_csv(out / "ratings.csv", index=False)
    data.movies.rename(columns={"movie_id": "movieId"}).to_csv(out / "movies.csv", index=False)
    return ratings.iloc[cut:]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def serving(models: Path, url: str, log: Path, port: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {
        **os.environ,
        "RECSYS_RATINGS_URL": url,
        "RECSYS_CANARY_SHARE": "0.5",
        "RECSYS_LOG_LEVEL": "warning",
        "RECSYS_POLL_SECONDS": "0.5",
    }
    command = [sys.executable, "-m", "service", "--models-dir", str(models), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait(lambda: _ok(f"{base}/readyz"), 300, process, log)
            yield process, base
        finally:
            process.terminate()
            process.wait(60)


def _ok(address: str) -> bool:
    try:
        return httpx.get(address, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait(condition: Any, seconds: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.2)


def share_interval(successes: int, n: int) -> list[float]:
    p = successes / n if n else 0.0
    half = Z * math.sqrt(p * (1 - p) / n) if n else 0.0
    return [p - half, p + half]


def arm_figures(stats: OnlineStats) -> dict[str, Any]:
    return {
        **stats.as_dict(),
        "rated_share_95": share_interval(stats.rated, stats.impressions),
        "liked_share_95": share_interval(stats.liked, stats.impressions),
    }


def replay(models: Path, current: str, canary: str, rest: pd.DataFrame, work: Path, port: int) -> dict[str, Any]:
    """One run: serve `current` and `canary` at share 0.5, replay `rest`, read both arms' figures."""
    promote(models, current)
    (models / CANARY).unlink(missing_ok=True)
    url = f"sqlite:///{work / f'replay-{current}-{canary}.db'}"
    with serving(models, url, work / f"server-{port}.log", port) as (process, base):
        alone = rss_mib(process.pid)
        (models / CANARY).write_text(canary + "\n")
        wait(lambda: httpx.get(f"{base}/model").json()["canary"]["version"] == canary, 300, process, work / "x")
        time.sleep(1)
        both = rss_mib(process.pid)
        served = {current: 0, canary: 0}
        started = time.perf_counter()
        with httpx.Client(base_url=base, timeout=30) as client:
            for user, movie, rating, timestamp in rest[["user_id", "movie_id", "rating", "timestamp"]].itertuples(
                index=False
            ):
                answer = client.get("/recommend", params={"user_id": str(user), "timestamp": int(timestamp), "k": K})
                answer.raise_for_status()
                served[answer.json()["model_version"]] += 1
                posted = client.post(
                    "/ratings",
                    json={
                        "user_id": str(user),
                        "movie_id": str(movie),
                        "rating": float(rating),
                        "timestamp": int(timestamp),
                    },
                )
                posted.raise_for_status()
            seconds = time.perf_counter() - started

            def written() -> float:
                text = client.get("/metrics").text
                line = next(x for x in text.splitlines() if x.startswith("recsys_impressions_written_total"))
                return float(line.split()[-1])

            wait(lambda: written() >= len(rest), 120, process, work / "x")
            dropped = [
                x for x in client.get("/metrics").text.splitlines() if x.startswith("recsys_impressions_dropped")
            ]
    with RatingsStore(url) as store:
        impressions = ImpressionStore(store)
        impressions.credit(WINDOW_SECONDS, settle_seconds=0)
        stats = impressions.online_stats()
    arms = {"current": arm_figures(stats[current]), "canary": arm_figures(stats[canary])}
    difference = arms["canary"]["liked_share"] - arms["current"]["liked_share"]
    se = math.sqrt(sum(a["liked_share"] * (1 - a["liked_share"]) / a["impressions"] for a in arms.values()))
    rule = CanaryConfig()
    action, reason, _ = judge(
        *(
            ArmFigures(
                version=v, impressions=stats[v].impressions, liked=stats[v].liked, liked_share=stats[v].liked_share
            )
            for v in (canary, current)
        ),
        rule,
    )
    return {
        "current": current,
        "canary": canary,
        "answers_by_version": served,
        "replay_seconds": round(seconds, 1),
        "impressions_dropped": dropped,
        "rss_mib_current_alone": round(alone, 1),
        "rss_mib_with_canary": round(both, 1),
        "arms": arms,
        "liked_share_difference_canary_minus_current": difference,
        "liked_share_difference_95": [difference - Z * se, difference + Z * se],
        "canary_rule": {"action": action, "reason": reason, "config": rule.model_dump()},
    }


def main(
    data_dir: Annotated[Path, typer.Option(help="Folder holding ml-100k (RecBole layout or GroupLens).")] = Path(
        "data"
    ),
    weak_epochs: Annotated[int, typer.Option(help="Epochs of the weak (tutorial) model.")] = 3,
    limit: Annotated[int, typer.Option(help="Replay only the first N of the latest ratings (0: all).")] = 0,
    port: Annotated[int, typer.Option(help="Loopback port for the server.")] = 8931,
) -> None:
    """Train both versions, replay twice (arms swapped), print and write the figures."""
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="online-replay-") as tmp:
        work = Path(tmp)
        rest = write_early_part(data_dir, work / "data" / "ml-100k", 0.8)
        if limit:
            rest = rest.iloc[:limit]
        models = work / "models"
        models.mkdir()
        t0 = time.perf_counter()
        strong = train_versions([build_config("first")], work / "data", models, progress=False)[0].version_dir.name
        t1 = time.perf_counter()
        weak_config = build_config("tutorial", epochs=weak_epochs, evaluate=False, refit=True)
        weak = train_versions([weak_config], work / "data", models, progress=False)[0].version_dir.name
        t2 = time.perf_counter()
        runs = [replay(models, strong, weak, rest, work, port), replay(models, weak, strong, rest, work, port + 1)]
    result = {
        "command": "python benchmarks/online_replay.py " + " ".join(sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "replayed_ratings": len(rest),
        "k": K,
        "strong": {
            "version": strong,
            "config": "--preset first (8 epochs, the default model)",
            "train_seconds": round(t1 - t0),
        },
        "weak": {
            "version": weak,
            "config": f"--preset tutorial --epochs {weak_epochs}",
            "train_seconds": round(t2 - t1),
        },
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(f"CURRENT {run['current']} / CANARY {run['canary']} ({run['replay_seconds']} s replay)")
        for arm in ("current", "canary"):
            a = run["arms"][arm]
            lo, hi = a["liked_share_95"]
            print(
                f"  {arm:7} impressions {a['impressions']:6}  rated {a['rated_share']:.4f}"
                f"  liked {a['liked_share']:.4f} [{lo:.4f}, {hi:.4f}]  coverage {a['coverage']}"
            )
        lo, hi = run["liked_share_difference_95"]
        print(
            f"  canary - current liked share {run['liked_share_difference_canary_minus_current']:+.4f}"
            f" [{lo:+.4f}, {hi:+.4f}]"
        )
        print(f"  canary rule: {run['canary_rule']['action']} ({run['canary_rule']['reason']})")
        print(
            f"  server RSS {run['rss_mib_current_alone']} MiB alone, {run['rss_mib_with_canary']} MiB with the canary"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    typer.run(main)
