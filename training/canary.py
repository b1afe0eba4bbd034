"""The retrainer's canary mode: a candidate that passed the offline gate is served to a share of users first, and
a later cycle promotes it or withdraws it on what those users did (online metrics from the impressions store).

The rule (`judge`), on each arm's liked share (impressions followed within the window by a rating of >= 4
stars of a shown movie; for current, counted since the canary started):

- wait until each arm has at least ``min_impressions`` impressions and the 95% interval of the difference of
  the two shares, z * sqrt(p_c (1 - p_c) / n_c + p_0 (1 - p_0) / n_0), is at most ``tolerance`` wide on each
  side;
- then promote when the canary's share is at most ``tolerance`` below current's, else withdraw;
- withdraw a canary still waiting ``max_days`` after it started: a share too small or traffic too thin to
  reach that sample soon should not keep a version half-served for ever (the current version stays the safe
  choice, and the next retrain brings a fresh candidate).

Why that sample size: once the half-width is at most the tolerance, a canary exactly as good as current is
withdrawn only if its estimate falls more than one half-width below the truth (2.5% at z = 1.96), and a canary
worse by twice the tolerance is promoted only if its estimate lands more than one half-width above the truth
(2.5% too). For two shares near p that takes about 2 z^2 p (1 - p) / tolerance^2 impressions per arm: for a
liked share of 0.1 and a tolerance of 0.01, about 6,900 each. ``min_impressions`` keeps a rare-event share
(near 0, where the interval formula is too narrow) from being judged on a handful of answers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.impressions import ImpressionStore, OnlineStats
from contract.pointers import CANARY, CURRENT, clear_canary, promote, read_pointer, set_canary
from contract.popularity import DAY_SECONDS
from contract.ratings import RatingsStore
from training.gate import GATE_RECORDS, write_gate_record


class CanaryConfig(BaseModel):
    """The canary rule's thresholds; each description is its --canary-* option help."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tolerance: float = Field(
        0.01, gt=0.0, le=1.0, description="Largest allowed drop of the canary's online liked share below current's."
    )
    min_impressions: int = Field(1000, ge=1, description="Impressions each arm needs before any decision.")
    z: float = Field(1.96, gt=0.0, description="Normal quantile of the interval the tolerance must contain.")
    window_days: float = Field(7.0, gt=0.0, description="Credit window, as the servers' RECSYS_CREDIT_WINDOW_DAYS.")
    settle_seconds: float = Field(5.0, ge=0.0, description="Ratings younger than this wait for their impressions.")
    max_days: float = Field(
        14.0, gt=0.0, description="Withdraw a canary still short of a decision this many days after it started."
    )


class ArmFigures(BaseModel):
    version: str
    impressions: int
    liked: int
    liked_share: float


class CanaryDecision(BaseModel):
    """One judgement of a canary, with its figures: written to models/gate/<canary>.canary.json."""

    canary: str
    current: str | None
    action: Literal["start", "wait", "promote", "withdraw"]
    reason: str
    arms: dict[str, ArmFigures] = Field(default_factory=dict)  # "canary", "current"
    difference: float | None = None  # canary's liked share minus current's
    half_width: float | None = None  # z * standard error of the difference
    needed_per_arm: int | None = None  # impressions per arm the half-width needs, at the shares seen so far
    baseline: dict[str, ArmFigures] = Field(default_factory=dict)  # each arm's figures when the canary started
    config: CanaryConfig
    decided_at: str


def judge(canary: ArmFigures, current: ArmFigures, config: CanaryConfig) -> tuple[str, str, dict[str, float | int]]:
    """The rule in the module docstring: (action, reason, figures) with action "wait", "promote" or "withdraw"."""
    p_c, n_c, p_0, n_0 = canary.liked_share, canary.impressions, current.liked_share, current.impressions
    variance = p_c * (1 - p_c) + p_0 * (1 - p_0)
    needed = math.ceil(config.z**2 * variance / config.tolerance**2)
    figures: dict[str, float | int] = {"needed_per_arm": max(needed, config.min_impressions)}
    if min(n_c, n_0) < config.min_impressions:
        return "wait", f"{min(n_c, n_0)} impressions on the smaller arm; {config.min_impressions} needed", figures
    difference = p_c - p_0
    half = config.z * math.sqrt(p_c * (1 - p_c) / n_c + p_0 * (1 - p_0) / n_0)
    figures |= {"difference": difference, "half_width": half}
    shares = f"liked share {p_c:.4f} ({n_c} impressions) against current's {p_0:.4f} ({n_0})"
    if half > config.tolerance:
        return "wait", f"{shares}: interval ±{half:.4f} is wider than the tolerance {config.tolerance}", figures
    if difference + 1e-12 >= -config.tolerance:
        return "promote", f"{shares}: within {config.tolerance} (interval ±{half:.4f})", figures
    return "withdraw", f"{shares}: more than {config.tolerance} below (interval ±{half:.4f})", figures


def _arm(version: str, stats: dict[str, OnlineStats], baseline: ArmFigures | None = None) -> ArmFigures:
    """The version's figures, less what it had when the canary started (current served others before)."""
    s = stats.get(version)
    impressions, liked = (s.impressions, s.liked) if s else (0, 0)
    if baseline is not None and baseline.version == version:
        impressions, liked = impressions - baseline.impressions, liked - baseline.liked
    return ArmFigures(
        version=version, impressions=impressions, liked=liked, liked_share=liked / impressions if impressions else 0.0
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _age(since: str, now: str) -> timedelta:
    """How long ago `since` was, both as the records write them (ISO 8601, UTC)."""
    return datetime.fromisoformat(now) - datetime.fromisoformat(since)


def write_canary_record(models_dir: Path, decision: CanaryDecision, suffix: str = "canary") -> Path:
    """models/gate/<canary>.<suffix>.json, atomically."""
    return write_gate_record(models_dir, f"{decision.canary}.{suffix}", decision)


def start_canary(models_dir: Path, candidate: str, store: RatingsStore, config: CanaryConfig) -> Path:
    """Point CANARY at `candidate` and record both arms' figures now, the baseline a later judgement subtracts."""
    impressions = ImpressionStore(store)
    impressions.create_schema()
    stats = impressions.online_stats()
    current = read_pointer(models_dir, CURRENT)
    baseline = {"canary": _arm(candidate, stats)}
    if current is not None:
        baseline["current"] = _arm(current, stats)
    set_canary(models_dir, candidate)
    decision = CanaryDecision(
        canary=candidate,
        current=current,
        action="start",
        reason=f"passed the offline gate; served to the canary share beside {current}",
        baseline=baseline,
        config=config,
        decided_at=_now(),
    )
    return write_canary_record(models_dir, decision, "canary-start")


def judge_canary(models_dir: Path, store: RatingsStore, config: CanaryConfig) -> tuple[CanaryDecision, Path] | None:
    """Judge the version on canary, if any, and act: promote it (CURRENT, CANARY cleared), withdraw it, or wait.

    Credits the ratings stored since the servers last did, so the figures are as fresh as the store.
    Returns:
        the decision and its record, or None when no canary is set.
    """
    canary = read_pointer(models_dir, CANARY)
    if canary is None:
        return None
    current = read_pointer(models_dir, CURRENT)
    impressions = ImpressionStore(store)
    impressions.create_schema()
    impressions.credit(round(config.window_days * DAY_SECONDS), config.settle_seconds)
    stats = impressions.online_stats()
    start = models_dir / GATE_RECORDS / f"{canary}.canary-start.json"
    started = CanaryDecision.model_validate_json(start.read_text()) if start.is_file() else None
    baseline = started.baseline if started is not None else {}
    now = _now()
    decision = CanaryDecision(
        canary=canary, current=current, action="wait", reason="", baseline=baseline, config=config, decided_at=now
    )
    figures: dict[str, float | int] = {}
    if current is None or current == canary:
        action, reason = "withdraw", f"CURRENT is {current}: nothing to compare the canary with"
    else:
        arms = {
            "canary": _arm(canary, stats, baseline.get("canary")),
            "current": _arm(current, stats, baseline.get("current")),
        }
        action, reason, figures = judge(arms["canary"], arms["current"], config)
        decision = decision.model_copy(update={"arms": arms})
        age = _age(started.decided_at, now) if started is not None else None
        if action == "wait" and age is not None and age >= timedelta(days=config.max_days):
            action, reason = "withdraw", f"still undecided {age.days} days after it started: {reason}"
    decision = decision.model_copy(update={"action": action, "reason": reason, **figures})
    if action == "promote":
        promote(models_dir, canary)
        clear_canary(models_dir)
    elif action == "withdraw":
        clear_canary(models_dir)
    return decision, write_canary_record(models_dir, decision)
