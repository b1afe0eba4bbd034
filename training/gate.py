"""Promotion gate: decides whether a freshly trained candidate version may replace models/CURRENT.

A candidate is promoted only if every check passes:

- files:  each file its manifest lists is present with the recorded sha256, and no other file is (the
          server refuses such a version anyway; better to find out before it is current).
- smoke:  in a fresh Python process, as a server would, its query_model SavedModel and ScaNN searcher load,
          and a batch of real training users gets finite embeddings and k valid, distinct neighbours.
- index:  its ScaNN recall@100 against brute force is at least ``min_recall``, both the figure the manifest
          reports and the one the smoke process re-measures on those users (the manifest is self-reported).
- metric: its protocol-B top-k (each user's training movies excluded, what the service returns) is at most
          ``tolerance`` below the current version's.

"On the same held-out data" is checked, not assumed: the two manifests must agree on the data fingerprint,
the split, the seed and the test size. If they do not, the candidate is refused with the differing fields
named, rather than re-evaluating the current version on the candidate's split, because (1) a random split
drawn from different data or another seed puts ratings the current model trained on into the new test set,
so its figure would be inflated, and its vocabularies may lack the new users and movies; (2) re-evaluation
would tie the gate to training internals, while the manifests are the one contract between the two.
An operator who changes the data on purpose passes ``allow_incomparable`` for that cycle: the metric check is
then skipped (recorded as such) and every other check still applies.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from training.checksums import MANIFEST, sha256_file

# Loading TensorFlow and a SavedModel takes ~5-15 s on 2 busy cores; a hang beyond this is a failure.
SMOKE_TIMEOUT_SECONDS = 300
# Manifest fields that must be equal for two versions' metrics to describe the same held-out ratings.
SAME_HELD_OUT: dict[str, tuple[str, ...]] = {
    "data fingerprint": ("data", "fingerprint"),
    "split": ("metrics", "split"),
    "seed": ("config", "seed"),
    "test size": ("metrics", "test_size"),
}

Figure = float | int | str | bool | None


class GateConfig(BaseModel):
    """The gate's thresholds, recorded with every decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Which protocol-B top-k is compared: top-100 moves least from run to run (top-10 is 0.005-0.015).
    k: int = Field(100, ge=1)
    # Largest allowed absolute drop of that accuracy below the current version's.
    tolerance: float = Field(0.01, ge=0.0, le=1.0)
    # Least ScaNN recall@100 against brute force; below it the index loses relevant movies.
    min_recall: float = Field(0.9, ge=0.0, le=1.0)
    # Neighbours the smoke query asks for: the service's usual page.
    smoke_k: int = Field(10, ge=1)
    # Promote although the held-out data differs (an intentional data change); other checks still apply.
    allow_incomparable: bool = False


class Check(BaseModel):
    """One check's outcome, with the figures it compared."""

    name: str
    ok: bool
    detail: str
    figures: dict[str, Figure] = Field(default_factory=dict)


class GateDecision(BaseModel):
    """What the gate decided for one candidate, and why: written to models/gate/<version>.json."""

    candidate: str
    current: str | None
    promoted: bool
    reasons: list[str]
    checks: list[Check]
    gate: GateConfig
    decided_at: str


class SmokeError(RuntimeError):
    """The candidate did not load or did not answer the smoke query correctly."""


SmokeRunner = Callable[[Path, int], dict[str, Figure]]


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """Parse ``version_dir/manifest.json``.

    Raises:
        OSError, ValueError: missing or not a JSON object.
    """
    manifest = json.loads((version_dir / MANIFEST).read_text())
    if not isinstance(manifest, dict):
        raise ValueError(f"{version_dir / MANIFEST} is not a JSON object")
    return manifest


def lookup(manifest: dict[str, Any], *keys: str) -> Any:
    """``manifest[k1][k2]...``, or None where any level is missing."""
    value: Any = manifest
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def check_files(version_dir: Path, manifest: dict[str, Any]) -> Check:
    """Compare the files on disk with the manifest's ``files`` (relative path -> sha256)."""
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        return Check(name="files", ok=False, detail="manifest has no 'files' table")
    # Same rule as training/checksums.py: every file but the manifest is listed.
    on_disk = {
        path.relative_to(version_dir).as_posix()
        for path in version_dir.rglob("*")
        if path.is_file() and path.name != MANIFEST
    }
    missing = sorted(set(listed) - on_disk)
    extra = sorted(on_disk - set(listed))
    changed = sorted(p for p in set(listed) & on_disk if sha256_file(version_dir / p) != listed[p])
    problems = [
        f"{label}: {', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}"
        for label, paths in (("missing", missing), ("not in manifest", extra), ("sha256 differs", changed))
        if paths
    ]
    figures: dict[str, Figure] = {
        "files": len(listed),
        "missing": len(missing),
        "extra": len(extra),
        "changed": len(changed),
    }
    if problems:
        return Check(name="files", ok=False, detail="; ".join(problems), figures=figures)
    return Check(name="files", ok=True, detail=f"{len(listed)} files match their sha256", figures=figures)


def run_smoke_query(version_dir: Path, k: int) -> dict[str, Figure]:
    """Load the version in a fresh interpreter (``python -m training.smoke``) and query it.

    A separate process loads the version the way a starting server does, with nothing cached from training,
    and a crash inside TensorFlow or ScaNN cannot take the retraining job down with it.

    Returns:
        the figures the smoke process measured (embedding_dim, neighbours, recall_at_100, users, seconds).
    Raises:
        SmokeError: the process failed, timed out or printed no result.
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "training.smoke", str(version_dir), "--k", str(k)],
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise SmokeError(f"no answer within {SMOKE_TIMEOUT_SECONDS} s") from error
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:])
        raise SmokeError(f"smoke process exited {done.returncode}: {tail}")
    try:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as error:
        raise SmokeError(f"smoke process printed no result: {done.stdout[-200:]!r}") from error
    return dict(figures)


def check_smoke(version_dir: Path, config: GateConfig, smoke: SmokeRunner) -> Check:
    try:
        figures = smoke(version_dir, config.smoke_k)
    except Exception as error:  # any failure to load or answer refuses the candidate; the record says which
        return Check(name="smoke", ok=False, detail=f"smoke query failed: {error}")
    return Check(name="smoke", ok=True, figures=figures, detail=f"loads and answers {config.smoke_k} neighbours")


def check_index(manifest: dict[str, Any], measured: float | None, min_recall: float) -> Check:
    reported = lookup(manifest, "index", "recall_at_100")
    figures: dict[str, Figure] = {"reported": reported, "measured": measured, "threshold": min_recall}
    if not isinstance(reported, int | float):
        return Check(name="index", ok=False, detail="manifest has no index.recall_at_100", figures=figures)
    low = [
        f"{label} {value:.3f}"
        for label, value in (("reported", reported), ("measured", measured))
        if value is not None and value < min_recall
    ]
    if low:
        return Check(
            name="index",
            ok=False,
            figures=figures,
            detail=f"ScaNN recall@100 {' and '.join(low)} is below the threshold {min_recall:.3f}",
        )
    return Check(name="index", ok=True, detail=f"ScaNN recall@100 >= {min_recall:.3f}", figures=figures)


def held_out_differences(candidate: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the held-out-data fields on which the two manifests differ or that either lacks."""
    differences = []
    for label, keys in SAME_HELD_OUT.items():
        ours, theirs = lookup(candidate, *keys), lookup(current, *keys)
        if ours is None or theirs is None:
            differences.append(f"{label} missing from {'candidate' if ours is None else 'current'} manifest")
        elif ours != theirs:
            differences.append(f"{label} {ours!r} != {theirs!r}")
    return differences


def check_metric(
    candidate: dict[str, Any], current: dict[str, Any] | None, current_name: str | None, config: GateConfig
) -> Check:
    key = f"top_{config.k}"
    name = f"metric B.{key}"
    ours = lookup(candidate, "metrics", "model", "B", key)
    if not isinstance(ours, int | float):
        return Check(name=name, ok=False, detail=f"candidate manifest has no metrics.model.B.{key}")
    if current is None:
        return Check(
            name=name,
            ok=True,
            figures={"candidate": ours},
            detail="no readable current version: nothing to compare against",
        )
    theirs = lookup(current, "metrics", "model", "B", key)
    differences = held_out_differences(candidate, current)
    if not isinstance(theirs, int | float):
        differences.append(f"current manifest has no metrics.model.B.{key}")
    figures: dict[str, Figure] = {"candidate": ours, "current": theirs, "tolerance": config.tolerance}
    if differences:
        detail = f"not comparable with {current_name} (different held-out data: {'; '.join(differences)})"
        if config.allow_incomparable:
            return Check(name=name, ok=True, figures=figures, detail=f"skipped, allowed: {detail}")
        return Check(
            name=name,
            ok=False,
            figures=figures,
            detail=f"{detail}; retrain with the current version's data and seed, or pass "
            "--allow-incomparable to promote on the other checks alone",
        )
    floor = theirs - config.tolerance
    figures["floor"] = floor
    # A hair of slack so that a float tolerance of exactly the drop counts as within it.
    if ours + 1e-9 < floor:
        return Check(
            name=name,
            ok=False,
            figures=figures,
            detail=f"{ours:.4f} is more than {config.tolerance} below {current_name}'s {theirs:.4f}",
        )
    return Check(
        name=name,
        ok=True,
        figures=figures,
        detail=f"{ours:.4f} against {current_name}'s {theirs:.4f} (floor {floor:.4f})",
    )


def evaluate(
    candidate_dir: Path, current_dir: Path | None, config: GateConfig, smoke: SmokeRunner | None = None
) -> GateDecision:
    """Run every check on ``candidate_dir`` against ``current_dir`` (None: no version is current yet).

    ``smoke`` defaults to ``run_smoke_query``. Never raises for a bad candidate: each problem becomes a failed
    check and a reason in the decision.
    """
    checks: list[Check] = []
    current: dict[str, Any] | None = None
    if current_dir is not None:
        try:
            current = read_manifest(current_dir)
        except (OSError, ValueError):
            current = None  # a current version without a manifest is broken: replacing it is the safe way
    try:
        manifest = read_manifest(candidate_dir)
    except (OSError, ValueError) as error:
        checks.append(Check(name="files", ok=False, detail=f"unreadable manifest: {error}"))
    else:
        checks.append(check_files(candidate_dir, manifest))
        if checks[-1].ok:
            checks.append(check_smoke(candidate_dir, config, smoke or run_smoke_query))
        else:
            checks.append(Check(name="smoke", ok=False, detail="skipped: files do not match the manifest"))
        measured = checks[-1].figures.get("recall_at_100")
        checks.append(check_index(manifest, measured if isinstance(measured, float | int) else None, config.min_recall))
        checks.append(check_metric(manifest, current, current_dir.name if current_dir else None, config))
    reasons = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    return GateDecision(
        candidate=candidate_dir.name,
        current=current_dir.name if current_dir else None,
        promoted=not reasons,
        reasons=reasons,
        checks=checks,
        gate=config,
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
