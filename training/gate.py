"""Promotion gate: decides whether a freshly trained candidate version may replace models/CURRENT.

A candidate is promoted only if every check passes:

- files:  each file its manifest lists is present with the recorded sha256, and no other file is (the
          server refuses such a version anyway; better to find out before it is current).
- smoke:  in a fresh Python process, the server's own loader (`python -m service.smoke`) accepts it, with
          every check a server makes, and a batch of real users, asked at the data's end and at now, gets
          finite embeddings and k valid, distinct neighbours.
- index:  its ScaNN recall@100 against brute force is at least ``min_recall``, both the figure the manifest
          reports and the one the smoke process re-measures on those users (the manifest is self-reported).
- metric: with protocol T (the default), on the ratings stored since the current version's cutoff, which
          neither model trained on, its T top-k is at most ``tolerance`` below the current version's, both
          scored as the server answers. When that window holds fewer than ``min_window`` ratings (or there is
          no current version), it must instead beat most-popular on its own held-out window.
          Without protocol T (the tutorial preset): its protocol-B top-k is at most ``tolerance`` below the
          current version's, on the same held-out data, as below.

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

from pydantic import BaseModel, ConfigDict, Field

from contract.checksums import file_problems
from contract.manifest import Manifest, Table, VersionError, read_manifest
from contract.pointers import TMP_PREFIX

GATE_RECORDS = "gate"  # models/gate/: every gate and canary decision with its figures, one JSON file each

# Manifest fields that must be equal for two versions' metrics to describe the same held-out ratings.
SAME_HELD_OUT: dict[str, Callable[[Manifest], object]] = {
    "data fingerprint": lambda m: m.data.fingerprint,
    "split": lambda m: m.metrics.split,
    "seed": lambda m: m.config.get("seed"),
    "test size": lambda m: m.metrics.test_size,
}

Figure = float | int | str | bool | None


class GateConfig(BaseModel):
    """The gate's thresholds, recorded with every decision; each description is its --gate-* option help."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(
        100,
        ge=1,
        description="Which top-k the gate compares, under protocol B and on the window under T "
        "(top-100 moves least run to run).",
    )
    tolerance: float = Field(0.01, ge=0.0, le=1.0, description="Largest allowed drop of that top-k below current.")
    min_recall: float = Field(0.9, ge=0.0, le=1.0, description="Least ScaNN recall against brute force.")
    smoke_k: int = Field(10, ge=1, description="Neighbours the smoke query asks for (the service's usual page).")
    smoke_users: int = Field(
        256, ge=1, description="Known users in the smoke batch: enough for a stable recall, quick to answer."
    )
    smoke_timeout_seconds: float = Field(
        300, gt=0, description="Loading TF and a model takes seconds on busy cores; longer than this is a hang."
    )
    min_window: int = Field(
        1000, ge=1, description="Stored ratings since the current cutoff needed to compare both models on them."
    )
    allow_incomparable: bool = Field(
        False, description="Without protocol T: promote although the held-out data differs (a data change)."
    )


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


class SmokeCheckError(RuntimeError):
    """The candidate did not load or did not answer the smoke query correctly."""


SmokeRunner = Callable[[Path, GateConfig], dict[str, Figure]]


def check_files(version_dir: Path, manifest: Manifest) -> Check:
    """Compare the files on disk with the manifest's `files`, by the contract's checksum rule."""
    problems = file_problems(version_dir, manifest.files)
    figures: dict[str, Figure] = {"files": len(manifest.files)}
    if problems:
        return Check(name="files", ok=False, detail="; ".join(problems), figures=figures)
    return Check(name="files", ok=True, detail=f"{len(manifest.files)} files match their sha256", figures=figures)


def run_smoke_query(version_dir: Path, config: GateConfig) -> dict[str, Figure]:
    """Load the version with the server's own loader in a fresh interpreter (`python -m service.smoke`).

    A separate process loads the version as a starting server does, with nothing cached from training, and a
    crash inside TensorFlow or ScaNN cannot take the retraining job down with it. It is a process boundary,
    not an import: training still never imports service.

    Returns:
        the figures the smoke process measured (users, embedding_dim, neighbours, recall, seconds).
    Raises:
        SmokeCheckError: the process failed, timed out or printed no result.
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "service.smoke", str(version_dir)]
    command += ["--k", str(config.smoke_k), "--users", str(config.smoke_users)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=config.smoke_timeout_seconds,
            env={**os.environ, "PYTHONPATH": path},
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise SmokeCheckError(f"no answer within {config.smoke_timeout_seconds:g} s") from error
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:])
        raise SmokeCheckError(f"smoke process exited {done.returncode}: {tail}")
    try:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as error:
        raise SmokeCheckError(f"smoke process printed no result: {done.stdout[-200:]!r}") from error
    return dict(figures)


def check_smoke(version_dir: Path, config: GateConfig, smoke: SmokeRunner) -> Check:
    try:
        figures = smoke(version_dir, config)
    except Exception as error:  # any failure to load or answer refuses the candidate; the record says which
        return Check(name="smoke", ok=False, detail=f"smoke query failed: {error}")
    return Check(name="smoke", ok=True, figures=figures, detail=f"loads and answers {config.smoke_k} neighbours")


def check_index(manifest: Manifest, measured: float | None, min_recall: float) -> Check:
    reported = manifest.index.recall
    figures: dict[str, Figure] = {"reported": reported, "measured": measured, "threshold": min_recall}
    low = [
        f"{label} {value:.3f}"
        for label, value in (("reported", reported), ("measured", measured))
        if value is not None and value < min_recall
    ]
    name = f"ScaNN recall@{manifest.index.recall_k}"
    if low:
        return Check(
            name="index",
            ok=False,
            figures=figures,
            detail=f"{name} {' and '.join(low)} is below the threshold {min_recall:.3f}",
        )
    return Check(name="index", ok=True, detail=f"{name} >= {min_recall:.3f}", figures=figures)


def held_out_differences(candidate: Manifest, current: Manifest) -> list[str]:
    """Names of the held-out-data fields on which the two manifests differ or that either lacks."""
    differences = []
    for label, field in SAME_HELD_OUT.items():
        ours, theirs = field(candidate), field(current)
        if ours is None or theirs is None:
            differences.append(f"{label} missing from {'candidate' if ours is None else 'current'} manifest")
        elif ours != theirs:
            differences.append(f"{label} {ours!r} != {theirs!r}")
    return differences


def check_metric(candidate: Manifest, current: Manifest | None, current_name: str | None, config: GateConfig) -> Check:
    key = f"top_{config.k}"
    name = f"metric B.{key}"
    ours = candidate.metrics.model.get("B", {}).get(key)
    if ours is None:
        return Check(name=name, ok=False, detail=f"candidate manifest has no metrics.model.B.{key}")
    if current is None:
        return Check(
            name=name,
            ok=True,
            figures={"candidate": ours},
            detail="no readable current version: nothing to compare against",
        )
    theirs = current.metrics.model.get("B", {}).get(key)
    differences = held_out_differences(candidate, current)
    if theirs is None:
        differences.append(f"current manifest has no metrics.model.B.{key}")
    figures: dict[str, Figure] = {"candidate": ours, "current": theirs, "tolerance": config.tolerance}
    if differences or theirs is None:
        detail = f"not comparable with {current_name} (different held-out data: {'; '.join(differences)})"
        if config.allow_incomparable:
            return Check(name=name, ok=True, figures=figures, detail=f"skipped, allowed: {detail}")
        return Check(
            name=name,
            ok=False,
            figures=figures,
            detail=f"{detail}; retrain with the current version's data and seed, or pass "
            "--gate-allow-incomparable to promote on the other checks alone",
        )
    return _within_tolerance(name, ours, theirs, current_name, config.tolerance, figures)


def _within_tolerance(
    name: str,
    ours: float,
    theirs: float,
    current_name: str | None,
    tolerance: float,
    figures: dict[str, Figure],
    where: str = "",
) -> Check:
    """Ok when `ours` is at most `tolerance` below `theirs`; the detail names both figures (and `where`)."""
    floor = theirs - tolerance
    figures = {**figures, "current": theirs, "tolerance": tolerance, "floor": floor}
    # A hair of slack so that a float tolerance of exactly the drop counts as within it.
    if ours + 1e-9 < floor:
        detail = f"{ours:.4f} is more than {tolerance} below {current_name}'s {theirs:.4f}{where}"
        return Check(name=name, ok=False, figures=figures, detail=detail)
    detail = f"{ours:.4f} against {current_name}'s {theirs:.4f}{where} (floor {floor:.4f})"
    return Check(name=name, ok=True, figures=figures, detail=detail)


def check_temporal(
    candidate: Manifest,
    current: Manifest | None,
    current_name: str | None,
    current_on_window: Table | None,
    config: GateConfig,
) -> Check:
    """Protocol T: against the current version on the window neither trained on, else against most-popular."""
    key = f"top_{config.k}"
    ours = candidate.metrics.model["T"].get(key)
    held = candidate.metrics.temporal
    figures: dict[str, Figure] = {
        "candidate": ours,
        "held_out": held.how if held else None,
        "window_after_id": held.after_id if held else None,
        "window_size": held.test_size if held else None,
    }
    if ours is None:
        return Check(name=f"metric T.{key}", ok=False, detail=f"candidate manifest has no metrics.model.T.{key}")
    on_window = (
        current is not None
        and current_on_window is not None
        and held is not None
        and held.how == "after_id"
        and held.after_id == current.data.ratings_cutoff_id
    )
    if on_window and current_on_window is not None:
        where = f" on the {figures['window_size']} ratings stored after id {figures['window_after_id']}"
        theirs = current_on_window.get(key, 0.0)
        return _within_tolerance(f"metric T.{key}", ours, theirs, current_name, config.tolerance, figures, where)
    baseline = candidate.metrics.most_popular.get("T", {}).get(key, 1.0)
    figures["most_popular"] = baseline
    why = "no current version" if current is None else f"fewer than {config.min_window} new stored ratings"
    ok = ours > baseline
    verdict = "beats" if ok else "does not beat"
    return Check(
        name=f"metric T.{key}",
        ok=ok,
        figures=figures,
        detail=f"{why}: {ours:.4f} {verdict} most-popular's {baseline:.4f} on its own held-out window",
    )


def decide(
    candidate_dir: Path,
    current_dir: Path | None,
    config: GateConfig,
    smoke: SmokeRunner | None = None,
    current_on_window: Table | None = None,
) -> GateDecision:
    """Run every check on `candidate_dir` against `current_dir` (None: no version is current yet).

    `smoke` defaults to `run_smoke_query`; `current_on_window` is the current version's protocol-T table on
    the candidate's held-out window, when the retrainer could score it there. Never raises for a bad
    candidate: each problem becomes a failed check and a reason in the decision.
    """
    checks: list[Check] = []
    current: Manifest | None = None
    if current_dir is not None:
        try:
            current = read_manifest(current_dir)
        except VersionError:
            current = None  # a current version without a valid manifest is broken: replacing it is the safe way
    try:
        manifest = read_manifest(candidate_dir)
    except VersionError as error:
        checks.append(Check(name="files", ok=False, detail=f"unreadable manifest: {error}"))
    else:
        checks.append(check_files(candidate_dir, manifest))
        if checks[-1].ok:
            checks.append(check_smoke(candidate_dir, config, smoke or run_smoke_query))
        else:
            checks.append(Check(name="smoke", ok=False, detail="skipped: files do not match the manifest"))
        measured = checks[-1].figures.get("recall")
        checks.append(check_index(manifest, measured if isinstance(measured, float | int) else None, config.min_recall))
        current_name = current_dir.name if current_dir else None
        if "T" in manifest.metrics.model:
            checks.append(check_temporal(manifest, current, current_name, current_on_window, config))
        else:
            checks.append(check_metric(manifest, current, current_name, config))
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


def write_gate_record(models_dir: Path, name: str, record: BaseModel) -> Path:
    """models/gate/<name>.json, atomically (a temp file, then a rename): a reader never sees half a decision."""
    records = models_dir / GATE_RECORDS
    records.mkdir(exist_ok=True)
    path = records / f"{name}.json"
    temp = records / f"{TMP_PREFIX}{name}-{os.getpid()}.json"
    temp.write_text(record.model_dump_json(indent=2) + "\n")
    os.replace(temp, path)
    return path
