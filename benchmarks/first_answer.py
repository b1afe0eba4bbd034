"""Benchmark: how long `make up` takes on a fresh clone to answer /recommend, and to serve the scored version.

Runs deploy/up.sh (what `make up` runs) with an empty models folder (and, with --fresh-data, an empty data
folder, so the MovieLens fetch counts too) and polls GET /recommend for a known user, at now and at an
explicit 1998 moment, every half second. It records the seconds to the first good answer (issue 18's
target: within 90 s of the install finishing, on 2 cores), then, with --wait-full, the seconds until the
whole job's scored version is served, and how many polls failed in between (the swap must drop none).
Writes benchmarks/results/first_answer.json.

    python benchmarks/first_answer.py [--fresh-data] [--wait-full 900]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

from benchmarks.machine import machine

ROOT = Path(__file__).resolve().parents[1]
IN_1998 = 880_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def _answers(base: str) -> tuple[str, bool] | None:
    """(model_version, scored) when /recommend answers at now and in 1998 with 10 movies each, else None."""
    now = _get(f"{base}/recommend?user_id=42&k=10")
    then = _get(f"{base}/recommend?user_id=42&k=10&timestamp={IN_1998}")
    if not now or not then or len(now["items"]) != 10 or len(then["items"]) != 10:
        return None
    model = _get(f"{base}/model") or {}
    return now["model_version"], bool((model.get("metrics") or {}).get("model"))


def main(
    fresh_data: Annotated[bool, typer.Option(help="Start from an empty data folder: the fetch counts too.")] = False,
    wait_full: Annotated[int, typer.Option(help="Also wait this long for the scored version (0: don't).")] = 0,
    out: Annotated[Path, typer.Option(help="Results file.")] = Path("benchmarks/results/first_answer.json"),
) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="first-answer-"))
    data_dir = scratch / "data"
    if not fresh_data:  # a copy of the fetched files: the fetch finds them, the run's logs stay in the scratch
        shutil.copytree(ROOT / "data" / "ml-100k", data_dir / "ml-100k")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA_DIR": str(data_dir),
        "MODELS_DIR": str(scratch / "models"),
        "PORT": str(port),
        "RECSYS_RATINGS_URL": f"sqlite:///{scratch}/ratings.db",
    }
    base = f"http://127.0.0.1:{port}"
    log = (scratch / "up.log").open("w")
    started = time.perf_counter()
    up = subprocess.Popen(["sh", "deploy/up.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)  # fmt: skip
    first, full, failed, polls = None, None, 0, 0
    try:
        while time.perf_counter() - started < 600 and first is None:
            if up.poll() is not None:
                raise SystemExit(f"deploy/up.sh exited with {up.returncode}; see {scratch / 'up.log'}")
            answer = _answers(base)
            if answer is not None:
                first = (time.perf_counter() - started, *answer)
            time.sleep(0.5)
        print(f"first answer after {first[0]:.1f} s from version {first[1]} (scored: {first[2]})" if first else
              "no answer within 600 s")  # fmt: skip
        while first is not None and wait_full and time.perf_counter() - started < wait_full and full is None:
            answer = _answers(base)
            polls += 1
            if answer is None:
                failed += 1
            elif answer[1]:
                full = (time.perf_counter() - started, answer[0])
            time.sleep(0.5)
        if full:
            print(f"scored version {full[1]} served after {full[0]:.1f} s; {failed} of {polls} polls failed")
    finally:
        os.killpg(up.pid, signal.SIGTERM)  # the server and the background training job with it
        up.wait(timeout=30)
        log.close()
    result = {
        "benchmark": "first_answer",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "fresh_data": fresh_data,
        "first_answer_seconds": round(first[0], 1) if first else None,
        "first_version_scored": first[2] if first else None,
        "scored_version_seconds": round(full[0], 1) if full else None,
        "polls_while_training": polls,
        "failed_polls_while_training": failed,
        "target_seconds": 90,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
