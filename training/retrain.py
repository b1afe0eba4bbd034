"""Retraining job: train a candidate version, gate it, promote it by rewriting models/CURRENT, prune old ones.

One cycle (``retrain``) holds models/.retrain.lock so that two jobs never race on CURRENT or on pruning.
The candidate is exported without promotion, so servers never see it until the gate passes; they poll
CURRENT and hot-swap by themselves. Every decision, promoted or refused, is written to
models/gate/<version>.json: outside the version directory, whose file set its manifest fixes.
``retrain_every`` repeats cycles on an interval, each in a fresh process.
"""

import fcntl
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from contract.manifest import MANIFEST, Table, VersionError, read_manifest
from contract.pointers import (
    CANARY,
    CURRENT,
    PROTECTED,
    TMP_PREFIX,
    PointerError,
    list_versions,
    promote,
    read_pointer,
)
from contract.ratings import RatingsStore, opened_store
from training.canary import CanaryConfig, judge_canary, start_canary
from training.gate import GateConfig, decide, write_gate_record

if TYPE_CHECKING:
    from training.config import TrainConfig

log = logging.getLogger(__name__)

LOCK_FILE = ".retrain.lock"
# A half-written export or an interrupted prune older than this belongs to no live process.
STALE_TEMP_SECONDS = 3600


class RetrainBusyError(RuntimeError):
    """Another retraining cycle holds the lock on this models directory."""


class RetrainResult(BaseModel):
    """The outcome of one cycle."""

    model_config = ConfigDict(frozen=True)

    candidate: str
    promoted: bool
    serving: str | None  # CURRENT after the cycle
    reasons: list[str]
    record: Path
    pruned: list[str]
    canary: str | None = None  # the version on canary after the cycle (canary mode)
    canary_action: str | None = None  # canary mode: start, wait, promote or withdraw (training/canary.py)


def prune(
    models_dir: Path, keep: int, protect: set[str] | frozenset[str] = frozenset(), now: float | None = None
) -> list[str]:
    """Delete all but the newest ``keep`` versions, never CURRENT, PROTECTED or ``protect``; clear stale temps.

    A version is first renamed to a temp name and then deleted, so a crash mid-delete never leaves a directory
    that still has its manifest but lacks files. Refused candidates count among the newest, so the latest
    ones stay for inspection. Gate records are kept: they are the audit trail and a few KB each.

    Returns:
        the names of the versions deleted.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    try:
        kept = {read_pointer(models_dir, name) for name in (CURRENT, PROTECTED, CANARY)} | set(protect)
    except PointerError as error:
        log.warning("not pruning: %s", error)  # deleting without knowing what is served is never safe
        return []
    versions = list_versions(models_dir)
    kept.update(versions[-keep:])
    pruned = []
    for version in versions:
        if version in kept:
            continue
        doomed = models_dir / f"{TMP_PREFIX}prune-{version}"
        os.replace(models_dir / version, doomed)
        shutil.rmtree(doomed)
        pruned.append(version)
    now = time.time() if now is None else now
    for entry in models_dir.iterdir():
        if entry.name.startswith(TMP_PREFIX) and now - entry.lstat().st_mtime > STALE_TEMP_SECONDS:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            log.info("removed stale %s", entry.name)
    if pruned:
        log.info("pruned %s (keeping %s)", ", ".join(pruned), ", ".join(sorted(v for v in kept if v)))
    return pruned


@contextmanager
def exclusive(models_dir: Path) -> Iterator[None]:
    """Hold models/.retrain.lock; released by the kernel even if the process dies."""
    with (models_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise RetrainBusyError(
                f"another retraining cycle is running on {models_dir} (it holds {LOCK_FILE}); wait for it to finish"
            ) from error
        yield


def _window_start(current_dir: Path | None, store: RatingsStore | None, min_window: int) -> int | None:
    """The current version's ratings cutoff, when enough ratings were stored after it to judge both models there."""
    if current_dir is None or store is None:
        return None
    try:
        cutoff = read_manifest(current_dir).data.ratings_cutoff_id
    except VersionError:
        return None
    window = store.count_after(cutoff)
    log.info("%d ratings stored after the current version's cutoff (id %d)", window, cutoff)
    return cutoff if window >= min_window else None


def _train_candidate(
    config: "TrainConfig",
    data_dir: Path,
    models_dir: Path,
    store: RatingsStore | None,
    window_start: int | None,
    current_dir: Path | None,
) -> tuple[Path, Table | None]:
    """Export a candidate (not promoted) and, on a window, the current version's protocol-T table there."""
    # Imported here: TensorFlow loads with it, and the scheduler process should stay small.
    from training.train import train_versions

    trained = train_versions(
        [config],
        data_dir,
        models_dir,
        progress=False,
        ratings=store,
        held_out_after_id=window_start,
        compare_with=current_dir if window_start is not None else None,
    )[0]
    return trained.version_dir, trained.compared_on_window


def retrain(
    config: "TrainConfig",
    data_dir: Path,
    models_dir: Path,
    gate: GateConfig,
    keep: int,
    ratings_url: str | None = None,
    canary: CanaryConfig | None = None,
) -> RetrainResult:
    """Run one cycle: train and export a candidate, gate it, promote it or keep it refused, prune.

    In canary mode (`canary` given) a version on canary is judged first (training/canary.py) and the cycle
    ends there; otherwise a candidate that passes the gate goes on canary instead of to CURRENT.

    Args:
        config: training settings for the candidate.
        data_dir: MovieLens files (already fetched).
        models_dir: the version directories and the CURRENT/PROTECTED pointers.
        gate: the promotion thresholds.
        keep: how many newest versions to keep besides CURRENT, PROTECTED and the version this cycle replaced.
        ratings_url: the ratings store the service writes; its ratings up to now are trained on, and those
            after the current version's cutoff are the window the gate compares both models on.
    Returns:
        the decision, the version served afterwards, the gate record's path and what was pruned.
    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        RetrainBusyError: another cycle holds the lock. Training errors propagate; nothing is promoted then.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    if canary is not None and ratings_url is None:
        raise ValueError("canary mode judges on the impressions store: give --ratings-url (or RECSYS_RATINGS_URL)")
    if not data_dir.is_dir():  # before the lock and TensorFlow's import: fail in a second, not after ten
        raise FileNotFoundError(f"no data in {data_dir}: run `python -m training fetch --data-dir {data_dir}` first")
    models_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(models_dir), opened_store(ratings_url) as store:
        judged = judge_canary(models_dir, store, canary) if canary is not None and store is not None else None
        if judged is not None:
            decision_on_canary, path = judged
            serving = read_pointer(models_dir, CURRENT)
            return RetrainResult(
                candidate=decision_on_canary.canary,
                promoted=decision_on_canary.action == "promote",
                serving=serving,
                reasons=[] if decision_on_canary.action == "promote" else [decision_on_canary.reason],
                record=path,
                pruned=prune(models_dir, keep, protect={v for v in (serving, decision_on_canary.current) if v}),
                canary=read_pointer(models_dir, CANARY),
                canary_action=decision_on_canary.action,
            )
        previous = read_pointer(models_dir, CURRENT)
        current_dir = models_dir / previous if previous else None
        window_start = _window_start(current_dir, store, gate.min_window)
        candidate_dir, current_on_window = _train_candidate(
            config, data_dir, models_dir, store, window_start, current_dir
        )
        log.info("gating candidate %s against %s", candidate_dir.name, previous or "no current version")
        decision = decide(candidate_dir, current_dir, gate, current_on_window=current_on_window)
        now_current = read_pointer(models_dir, CURRENT)
        if decision.promoted and now_current != previous:
            # Someone rolled back or promoted by hand during training: their choice wins.
            decision = decision.model_copy(
                update={
                    "promoted": False,
                    "reasons": [f"CURRENT changed during the cycle ({previous} -> {now_current}); not overwriting it"],
                }
            )
        record = write_gate_record(models_dir, decision.candidate, decision)
        if decision.promoted and canary is not None and store is not None and previous is not None:
            start_canary(models_dir, candidate_dir.name, store, canary)
            log.info("put %s on canary beside %s; a later cycle judges it", candidate_dir.name, previous)
        elif decision.promoted:
            promote(models_dir, candidate_dir.name)
            log.info("promoted %s (was %s); record %s", candidate_dir.name, previous, record)
        else:
            log.warning(
                "refused %s, kept for inspection: %s; record %s",
                candidate_dir.name,
                " | ".join(decision.reasons),
                record,
            )
        # The replaced version stays one more cycle: a replica that has not swapped yet may be loading it.
        pruned = prune(models_dir, keep, protect={previous} if previous else set())
        on_canary = read_pointer(models_dir, CANARY)
        return RetrainResult(
            candidate=candidate_dir.name,
            promoted=decision.promoted and on_canary != candidate_dir.name,
            serving=read_pointer(models_dir, CURRENT),
            reasons=decision.reasons,
            record=record,
            pruned=pruned,
            canary=on_canary,
            canary_action="start" if on_canary == candidate_dir.name else None,
        )


def seconds_until_due(models_dir: Path, interval_seconds: float, now: float | None = None) -> float:
    """Time left until the newest version (promoted or refused) is ``interval_seconds`` old.

    Scheduling from the newest version rather than from process start means a restarted retrainer neither
    retrains at once after the trainer just did, nor waits a whole interval after a week switched off.
    """
    now = time.time() if now is None else now
    versions = list_versions(models_dir) if models_dir.is_dir() else []
    if not versions:
        return 0.0
    newest = (models_dir / versions[-1] / MANIFEST).stat().st_mtime
    return max(0.0, newest + interval_seconds - now)


def _cycle(
    config: "TrainConfig",
    data_dir: Path,
    models_dir: Path,
    gate: GateConfig,
    keep: int,
    ratings_url: str | None,
    canary: CanaryConfig | None = None,
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    retrain(config, data_dir, models_dir, gate, keep, ratings_url, canary)


def retrain_every(
    interval_seconds: float,
    config: "TrainConfig",
    data_dir: Path,
    models_dir: Path,
    gate: GateConfig,
    keep: int,
    cycles: int | None = None,
    ratings_url: str | None = None,
    canary: CanaryConfig | None = None,
) -> None:
    """Run a cycle whenever the newest version is ``interval_seconds`` old, until SIGTERM/SIGINT.

    Each cycle runs in a fresh spawned process: TensorFlow's memory from training is returned when it exits,
    so the scheduler idles small, and a crash in one cycle is logged without ending the schedule.
    """
    if interval_seconds <= 0:
        raise ValueError(f"interval must be positive, got {interval_seconds}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping (a running cycle is terminated)", signum)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        cycle_args = (config, data_dir, models_dir, gate, keep, ratings_url, canary)
        _schedule(interval_seconds, cycle_args, models_dir, stop, cycles)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _schedule(
    interval_seconds: float, cycle_args: tuple[Any, ...], models_dir: Path, stop: threading.Event, cycles: int | None
) -> None:
    spawn = multiprocessing.get_context("spawn")
    done = 0
    while cycles is None or done < cycles:
        wait = seconds_until_due(models_dir, interval_seconds)
        log.info("next retraining cycle in %.0f s", wait)
        if stop.wait(wait):
            break
        worker = spawn.Process(target=_cycle, args=cycle_args, name="retrain-cycle")
        worker.start()
        while worker.is_alive():
            worker.join(timeout=1.0)
            if stop.is_set() and worker.is_alive():
                worker.terminate()  # its half-written export starts with .tmp and is pruned later
                worker.join()
        if stop.is_set():
            break
        if worker.exitcode != 0:
            log.error(
                "retraining cycle failed (exit code %s); the next one is due in %.0f s",
                worker.exitcode,
                interval_seconds,
            )
            # A failed cycle leaves no version, so back off a full interval rather than retry at once.
            if stop.wait(interval_seconds):
                break
        done += 1
