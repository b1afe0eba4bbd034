"""The retrainer's canary mode: a passing candidate goes on canary; a later cycle promotes or withdraws it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.impressions import Impression, ImpressionStore
from contract.pointers import CANARY, CURRENT, read_pointer
from contract.ratings import Rating, RatingsStore, opened_store
from tests.training.test_gate import GATE, fake_trainer, make_version, passing_smoke
from training import retrain as retrain_module
from training.canary import ArmFigures, CanaryConfig, judge
from training.retrain import retrain

RULE = CanaryConfig(tolerance=0.03, min_impressions=1000, settle_seconds=0)
T0 = 885_000_000


def arm(impressions: int, liked: int, version: str = "v") -> ArmFigures:
    return ArmFigures(version=version, impressions=impressions, liked=liked, liked_share=liked / impressions)


def test_the_rule_waits_for_enough_impressions_then_decides_both_ways() -> None:
    assert judge(arm(999, 100), arm(5000, 500), RULE)[0] == "wait"  # the floor
    tight = CanaryConfig(tolerance=0.005, min_impressions=1000)
    action, reason, figures = judge(arm(2000, 200), arm(2000, 200), tight)
    assert action == "wait" and "wider than the tolerance" in reason
    # The interval needs about z^2 (2 p (1 - p)) / tolerance^2 per arm: 27,660 for p = 0.1 and 0.005.
    assert figures["needed_per_arm"] == 27_660
    assert judge(arm(27_700, 2770), arm(27_700, 2770), tight)[0] == "promote"
    assert judge(arm(2000, 190), arm(2000, 200), RULE)[0] == "promote"  # half a point down: within 3
    action, reason, figures = judge(arm(2000, 40), arm(2000, 200), RULE)
    assert action == "withdraw" and "more than 0.03 below" in reason
    assert figures["difference"] == pytest.approx(-0.08) and figures["half_width"] < RULE.tolerance


def show(store: RatingsStore, version: str, users: range, liked_every: int) -> None:
    """One impression of movie 1 per user; every `liked_every`-th user (none for 0) rates it 5 stars right after."""
    ImpressionStore(store).add([Impression(f"{version}-{u}", str(u), version, T0, ("1", "2"), True) for u in users])
    store.add([Rating(str(u), "1", 5.0, T0 + 1) for u in users if liked_every and u % liked_every == 0])


@pytest.fixture
def cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("training.gate.run_smoke_query", passing_smoke)
    models = tmp_path / "models"
    models.mkdir()
    current = make_version(models, "20200102T000000Z")
    (models / CURRENT).write_text(current.name + "\n")
    url = f"sqlite:///{tmp_path / 'ratings.db'}"

    def run(trainer: Any = None) -> Any:
        if trainer is not None:
            monkeypatch.setattr(retrain_module, "_train_candidate", trainer)
        return retrain(None, tmp_path, models, GATE, keep=1, ratings_url=url, canary=RULE)  # type: ignore[arg-type]

    return models, current.name, url, run


def never_trains(*args: Any) -> Any:
    raise AssertionError("a cycle that judges a canary trains nothing")


@pytest.mark.parametrize(("canary_liked_every", "action"), [(10, "promote"), (50, "withdraw")])
def test_a_canary_is_started_then_judged_on_what_users_did(cycle: Any, canary_liked_every: int, action: str) -> None:
    models, current, url, run = cycle
    with opened_store(url) as store:
        assert store is not None
        ImpressionStore(store).create_schema()
        show(store, current, range(1, 501), liked_every=0)  # before the canary: none liked
    started = run(fake_trainer(0.41))
    candidate = started.candidate
    assert (started.canary, started.canary_action, started.promoted) == (candidate, "start", False)
    assert read_pointer(models, CANARY) == candidate and read_pointer(models, CURRENT) == current
    baseline = json.loads((models / "gate" / f"{candidate}.canary-start.json").read_text())["baseline"]
    assert baseline["current"]["impressions"] == 500

    with RatingsStore(url) as store:
        show(store, candidate, range(1000, 1500), liked_every=canary_liked_every)
        show(store, current, range(5000, 5500), liked_every=10)
    waiting = run(never_trains)
    assert waiting.canary_action == "wait" and "1000 needed" in waiting.reasons[0]
    assert read_pointer(models, CANARY) == candidate

    with RatingsStore(url) as store:
        show(store, candidate, range(2000, 3500), liked_every=canary_liked_every)
        show(store, current, range(6000, 7500), liked_every=10)
    judged = run(never_trains)
    record = json.loads(judged.record.read_text())
    assert judged.record == models / "gate" / f"{candidate}.canary.json"
    assert judged.canary_action == record["action"] == action and read_pointer(models, CANARY) is None
    assert record["arms"]["current"]["impressions"] == 2000  # counted since the canary started
    assert record["arms"]["current"]["liked_share"] == pytest.approx(0.1)
    assert record["arms"]["canary"]["liked_share"] == pytest.approx(1 / canary_liked_every)
    assert read_pointer(models, CURRENT) == (candidate if action == "promote" else current)
    assert judged.promoted == (action == "promote")
    assert (models / candidate).is_dir()  # kept either way: promoted, or for inspection this cycle


def test_canary_mode_needs_the_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--ratings-url"):
        retrain(None, tmp_path, tmp_path, GATE, keep=1, canary=RULE)  # type: ignore[arg-type]


def test_a_canary_still_undecided_after_max_days_is_withdrawn(cycle: Any) -> None:
    models, current, url, run = cycle
    candidate = run(fake_trainer(0.41)).candidate
    start = models / "gate" / f"{candidate}.canary-start.json"
    record = json.loads(start.read_text())
    with RatingsStore(url) as store:
        show(store, candidate, range(1, 101), liked_every=10)  # far below the 1000 impressions a decision needs
    record["decided_at"] = (datetime.now(UTC) - timedelta(days=RULE.max_days - 1)).isoformat(timespec="seconds")
    start.write_text(json.dumps(record))
    assert run(never_trains).canary_action == "wait"  # a day short of the limit: it keeps waiting
    record["decided_at"] = (datetime.now(UTC) - timedelta(days=RULE.max_days, seconds=1)).isoformat(timespec="seconds")
    start.write_text(json.dumps(record))
    judged = run(never_trains)
    assert judged.canary_action == "withdraw" and f"{int(RULE.max_days)} days after it started" in judged.reasons[0]
    assert read_pointer(models, CANARY) is None and read_pointer(models, CURRENT) == current
