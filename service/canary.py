"""The canary: a second version, named by models/CANARY, served beside CURRENT to a stable share of users.

Each user is assigned by a hash of their user_id alone (`canary_bucket`, uniform in [0, 1)): a user whose
bucket is below RECSYS_CANARY_SHARE gets the canary, on every replica and every request, and raising the
share only adds users. The canary is loaded, verified, warmed up and hot-swapped by a second Registry that
follows CANARY as the first follows CURRENT; with no CANARY (or one naming the current version) it serves
nothing and everyone gets CURRENT.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from contract.pointers import CANARY, clear_canary, set_canary
from contract.popularity import DAY_SECONDS
from service.artifacts import ModelVersion
from service.config import Settings
from service.errors import ModelsDirUnwritableError, ServiceError, VersionNotFoundError
from service.metrics import Metrics
from service.popularity import RecentPopularity
from service.registry import Registry

log = logging.getLogger(__name__)

_PERSON = b"recsys-canary"  # the hash's personalisation: no other use of blake2b on user ids lines up with it


def canary_bucket(user_id: str) -> float:
    """The user's place in [0, 1): the same on every replica, in every process, forever."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class CanaryMetrics(Metrics):
    """The series a Registry moves (served version, swaps, refused loads), as the canary's own, on the app's registry.

    It deliberately skips Metrics.__init__: the request series belong to the app's Metrics once.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.model_info = Gauge("recsys_canary_info", "1 for the canary served.", ["version"], registry=registry)
        self.swaps = Counter("recsys_canary_swaps", "Canary versions swapped in.", registry=registry)
        self.load_failures = Counter(
            "recsys_canary_load_failures", "Canary versions refused (failed to verify or load).", registry=registry
        )


class CanaryRegistry(Registry):
    """A Registry that follows models/CANARY, and serves nothing when CANARY is absent or names CURRENT's version."""

    def __init__(
        self,
        models_dir: Path,
        max_batch: int,
        metrics: CanaryMetrics,
        min_index_recall: float,
        current: Callable[[], str | None],
    ) -> None:
        super().__init__(models_dir, max_batch, metrics, min_index_recall, pointer=CANARY)
        self._current_name = current  # the version CURRENT serves: a canary of it is no canary

    async def sync(self) -> None:
        """Serve what CANARY names, or nothing; decided under the load lock, so an admin set or clear never races it."""
        async with self._lock:
            try:
                target = self.read_current()
            except VersionNotFoundError:
                return  # logged and counted; the canary served stays until the pointer is readable again
            if target is None or target == self._current_name():
                self._withdraw()
                return
            if target == self._name() or (target in self._refused and self._refused[target] == self._stamp(target)):
                return
            with contextlib.suppress(ServiceError):  # logged and counted by _swap_in
                await self._swap_in(target)

    def _withdraw(self) -> None:
        """Stop serving a canary (its users get CURRENT from their next request). Caller holds the lock."""
        withdrawn, self._current = self._current, None
        if withdrawn is not None:
            self._metrics.model_info.remove(withdrawn.name)
            log.info("canary %s withdrawn", withdrawn.name)

    async def set(self, name: str) -> ModelVersion:
        """Load `name` now, then point models/CANARY at it so every replica follows (admin).

        Raises:
            VersionNotFoundError, VersionRejectedError: nothing changes.
            ModelsDirUnwritableError: loaded here, but CANARY could not be written (a read-only models dir).
        """
        async with self._lock:
            version = self._current if self._current and self._current.name == name else await self._swap_in(name)
            try:
                set_canary(self.models_dir, name)
            except OSError as e:
                raise ModelsDirUnwritableError(
                    f"cannot write {self.models_dir / CANARY} ({e.strerror}); the models dir must be writable by "
                    "the server for /admin/canary, or write the pointer with the retrainer"
                ) from None
            return version

    async def clear(self) -> None:
        """Remove models/CANARY and stop serving the canary here; the other replicas follow at their next poll.

        Raises:
            ModelsDirUnwritableError: CANARY could not be removed.
        """
        async with self._lock:
            try:
                clear_canary(self.models_dir)
            except OSError as e:
                raise ModelsDirUnwritableError(f"cannot remove {self.models_dir / CANARY} ({e.strerror})") from None
            self._withdraw()


class Canary:
    """Which version answers a user: the canary for its share of users while one is served, else CURRENT."""

    def __init__(self, registry: CanaryRegistry, share: float, popularity: RecentPopularity) -> None:
        self.registry = registry
        self.share = share
        self.popularity = popularity  # the canary's own at-now fallback ranking

    def version_for(self, current: ModelVersion, user_id: str) -> ModelVersion:
        """The version that answers `user_id`, given the CURRENT version the request holds."""
        canary = self.registry.current
        if canary is None or self.share <= 0 or canary.name == current.name:
            return current
        return canary if canary_bucket(user_id) < self.share else current

    def ranking(self, version: ModelVersion, current: RecentPopularity) -> np.ndarray:
        """The at-now fallback ranking of `version`, from whichever counter follows it."""
        return self.popularity.ranking(version) if version is self.registry.current else current.ranking(version)

    def served(self) -> list[str]:
        """The canary's name while one is served (a list: none or one)."""
        canary = self.registry.current
        return [canary.name] if canary else []

    def describe(self) -> dict[str, object]:
        canary = self.registry.current
        return {"version": canary.name if canary else None, "share": self.share, "pointer": CANARY}


def new_canary(settings: Settings, metrics: Metrics, current: Callable[[], str | None]) -> Canary:
    """The app's canary, following models/CANARY with its own series on the app's metrics registry."""
    registry = CanaryRegistry(
        settings.models_dir, settings.max_batch, CanaryMetrics(metrics.registry), settings.min_index_recall, current
    )
    return Canary(registry, settings.canary_share, RecentPopularity(settings.popular_half_life_days * DAY_SECONDS))
