"""HTTP probes of a running stack, for .ci/docker_e2e.sh; standard library only, so the host's python3 runs it.

    probe.py recommend URL [--k K]       one /recommend answer: status 200, K distinct movies, a model_version
    probe.py loop URL --out FILE ...     a bounded client loop (requests, seconds, a stop file); writes a summary
    probe.py version URL                 the version /model reports
    probe.py rate URL --count N          POST N ratings of new users (5 each, a second apart); prints the count
    probe.py stored URL                  /model's data.num_stored_ratings of the served version
    probe.py canary URL --token T [--version V]   POST /admin/canary V (none: DELETE); prints the canary served
    probe.py arms URL --users N          /recommend for users 1..N; prints {version: answers} as JSON

Only loopback URLs are accepted: test traffic never leaves the machine.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

NUM_USERS = 943  # MovieLens-100K user ids 1..943: every request asks for a real user
NUM_MOVIES = 1682  # MovieLens-100K movie ids 1..1682
NEW_USERS = 100_000  # ids of the users `rate` invents start above this


def loopback(url: str) -> str:
    host = urlsplit(url).hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit(f"refusing to send test traffic to {host!r}: use 127.0.0.1")
    return url.rstrip("/")


def get(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON body or None); a connection failure is status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return 0, None


def post(
    url: str, body: Any, timeout: float = 30.0, method: str = "POST", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """(status, parsed JSON body or None) of a JSON request; a connection failure is status 0."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return 0, None


def served_version(body: dict[str, Any]) -> str | None:
    """The version a body names: /model says "version", answers to /recommend say "model_version"."""
    return body.get("version") or body.get("model_version")


def recommend(base: str, user: int, k: int) -> tuple[dict[str, Any], str]:
    """(body, problem); problem is '' for a correct answer: k distinct titled movies from a known version."""
    status, body = get(f"{base}/recommend?user_id={user}&k={k}")
    if status != 200 or not isinstance(body, dict):
        return {}, f"status {status}"
    items = body.get("items")
    if not isinstance(items, list) or len(items) != k:
        return body, f"{len(items) if isinstance(items, list) else 'no'} items, wanted {k}"
    if len({item.get("movie_id") for item in items}) != k or not all(item.get("title") for item in items):
        return body, "duplicate or untitled movies"
    if not body.get("model_version"):
        return body, "no model_version"
    return body, ""


def cmd_recommend(args: argparse.Namespace) -> int:
    body, problem = recommend(loopback(args.url), args.user, args.k)
    if problem:
        print(f"/recommend?user_id={args.user}&k={args.k}: {problem}", file=sys.stderr)
        return 1
    titles = [item["title"] for item in body["items"][:3]]
    print(f"user {args.user}: {args.k} movies from version {body['model_version']}, e.g. {titles}")
    return 0


def cmd_loop(args: argparse.Namespace) -> int:
    base = loopback(args.url)
    started = time.monotonic()
    requests, failures, versions, problems = 0, 0, Counter[str](), Counter[str]()
    stop = Path(args.stop_file)
    while requests < args.max_requests and time.monotonic() - started < args.max_seconds and not stop.exists():
        body, problem = recommend(base, requests % NUM_USERS + 1, args.k)
        requests += 1
        versions[body.get("model_version") or "none"] += 1
        if problem:
            failures += 1
            problems[problem] += 1
        time.sleep(args.pause)
    summary = {
        "requests": requests,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
        "versions": dict(versions),
        "problems": dict(problems.most_common(5)),
        "stopped_by": "stop file" if stop.exists() else "limit",
    }
    Path(args.out).write_text(json.dumps(summary))
    return 0


def model_card(url: str) -> dict[str, Any] | None:
    """GET /model's body, or None (said on stderr) when it is not a 200 with a JSON object."""
    status, body = get(f"{loopback(url)}/model")
    if status != 200 or not isinstance(body, dict):
        print(f"/model: status {status}", file=sys.stderr)
        return None
    return body


def cmd_version(args: argparse.Namespace) -> int:
    body = model_card(args.url)
    if body is None:
        return 1
    print(served_version(body))
    return 0


def cmd_rate(args: argparse.Namespace) -> int:
    """New users each rate 5 movies, a second apart and before now, in batches: histories to learn from."""
    base, now, stored = loopback(args.url), int(time.time()), 0
    ratings = [
        {
            "user_id": str(NEW_USERS + i // 5),
            "movie_id": str((i * 37) % NUM_MOVIES + 1),
            "rating": 4.0,
            "timestamp": now - args.count + i,
        }
        for i in range(args.count)
    ]
    for lo in range(0, len(ratings), args.batch):
        status, body = post(f"{base}/ratings", {"ratings": ratings[lo : lo + args.batch]})
        if status != 201 or not isinstance(body, dict) or body.get("stored") != len(ratings[lo : lo + args.batch]):
            print(f"POST /ratings: status {status}, {body}", file=sys.stderr)
            return 1
        stored += body["stored"]
    print(stored)
    return 0


def cmd_stored(args: argparse.Namespace) -> int:
    body = model_card(args.url)
    if body is None:
        return 1
    print(body["data"].get("num_stored_ratings", 0))
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """Set (--version) or clear the canary through the admin API; the replica that answers writes models/CANARY."""
    auth = {"Authorization": f"Bearer {args.token}"}
    url = f"{loopback(args.url)}/admin/canary"
    if args.version:
        status, body = post(url, {"version": args.version}, headers=auth)
    else:
        status, body = post(url, None, method="DELETE", headers=auth)
    if status != 200 or not isinstance(body, dict):
        print(f"{'POST' if args.version else 'DELETE'} /admin/canary: status {status}, {body}", file=sys.stderr)
        return 1
    print(body.get("canary"))
    return 0


def cmd_arms(args: argparse.Namespace) -> int:
    """Which version answered each of users 1..N (every answer must be a correct one)."""
    base, versions = loopback(args.url), Counter[str]()
    for user in range(1, args.users + 1):
        body, problem = recommend(base, user, 10)
        if problem:
            print(f"/recommend?user_id={user}: {problem}", file=sys.stderr)
            return 1
        versions[body["model_version"]] += 1
    print(json.dumps(dict(versions)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    one = sub.add_parser("recommend")
    one.add_argument("url")
    one.add_argument("--user", type=int, default=1)
    one.add_argument("--k", type=int, default=10)
    one.set_defaults(run=cmd_recommend)
    loop = sub.add_parser("loop")
    loop.add_argument("url")
    loop.add_argument("--out", required=True)
    loop.add_argument("--stop-file", required=True)
    loop.add_argument("--max-requests", type=int, default=50_000)
    loop.add_argument("--max-seconds", type=float, default=1200)
    loop.add_argument("--pause", type=float, default=0.02, help="seconds between requests (bounds the load)")
    loop.add_argument("--k", type=int, default=10)
    loop.set_defaults(run=cmd_loop)
    version = sub.add_parser("version")
    version.add_argument("url")
    version.set_defaults(run=cmd_version)
    rate = sub.add_parser("rate")
    rate.add_argument("url")
    rate.add_argument("--count", type=int, required=True)
    rate.add_argument("--batch", type=int, default=500)
    rate.set_defaults(run=cmd_rate)
    stored = sub.add_parser("stored")
    stored.add_argument("url")
    stored.set_defaults(run=cmd_stored)
    canary = sub.add_parser("canary")
    canary.add_argument("url")
    canary.add_argument("--token", required=True)
    canary.add_argument("--version", default="")
    canary.set_defaults(run=cmd_canary)
    arms = sub.add_parser("arms")
    arms.add_argument("url")
    arms.add_argument("--users", type=int, default=300)
    arms.set_defaults(run=cmd_arms)
    args = parser.parse_args()
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
