"""Which version is served: follow models/CURRENT (or an admin pin), load in the background, swap atomically.

Requests read `Registry.current` once and keep that object for their whole life, so a swap (one reference
assignment on the event loop) never changes a version under a request in flight. A version that fails to
verify or load is refused, logged and counted, and the version already served stays.
"""

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from pathlib import Path

from contract.manifest import MANIFEST
from contract.pointers import CURRENT, VERSION_NAME, PointerError, read_pointer
from service import similar
from service.artifacts import ModelVersion, load_version
from service.errors import NoModelError, ServiceError, VersionNotFoundError, VersionRejectedError
from service.metrics import Metrics

log = logging.getLogger(__name__)


def freeze_runtime() -> None:
    """Hide TensorFlow's ~300k long-lived runtime objects from the garbage collector, once, before any load.

    Each full collection walked them all, a stall of a large fraction of a second under load. Frozen once at
    startup, collections walk only what came after: model versions and request garbage.
    """
    gc.collect()
    gc.freeze()


class Registry:
    """The served version, and the only place that changes it."""

    def __init__(
        self, models_dir: Path, max_batch: int, metrics: Metrics, min_index_recall: float, pointer: str = CURRENT
    ) -> None:
        self.models_dir = models_dir
        self.pointer = pointer  # the pointer file followed: CURRENT, or CANARY (service/canary.py)
        self._max_batch = max_batch  # warm-up runs the largest batch the batcher will send
        self._min_index_recall = min_index_recall
        self._metrics = metrics
        self._current: ModelVersion | None = None
        self._pinned: str | None = None
        self._lock = asyncio.Lock()  # one load at a time; the poller and admin calls take turns
        # name -> manifest stamp when refused: a refused version is retried only once its manifest changes.
        self._refused: dict[str, tuple[int, int] | None] = {}
        self._pointer_problem: str | None = None  # the last unreadable-CURRENT message, logged once
        # Called in the loading thread with each version that loaded, before it is served (blocking is fine).
        self.on_load: Callable[[ModelVersion], None] = lambda version: None
        # Called in the loading thread: what to serve of a loaded version (the catalogue's changes applied).
        self.derive: Callable[[ModelVersion], ModelVersion] = lambda version: version

    @property
    def current(self) -> ModelVersion | None:
        return self._current

    @property
    def pinned(self) -> str | None:
        return self._pinned

    def require(self) -> ModelVersion:
        """The served version, for a request to hold on to.

        Raises:
            NoModelError: nothing loaded yet.
        """
        if self._current is None:
            raise NoModelError(
                f"no model version is loaded yet; waiting for {self.models_dir / CURRENT} to name a valid version"
            )
        return self._current

    def read_current(self) -> str | None:
        """The version named by models/CURRENT, or None while there is none.

        Raises:
            VersionNotFoundError: CURRENT is unreadable or names no version (logged and counted once).
        """
        try:
            name = read_pointer(self.models_dir, self.pointer)
        except PointerError as e:
            if str(e) != self._pointer_problem:
                self._pointer_problem = str(e)
                self._metrics.load_failures.inc()
                log.error("ignoring %s, still serving %s: %s", self.pointer, self._name(), e)
            raise VersionNotFoundError(str(e)) from e
        self._pointer_problem = None
        return name

    def _stamp(self, name: str) -> tuple[int, int] | None:
        try:
            stat = (self.models_dir / name / MANIFEST).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def _swap_in(self, name: str) -> ModelVersion:
        """Load `name` off the event loop, then make it the served version. Caller holds the lock."""
        path = self.models_dir / name
        stamp = self._stamp(name)
        try:
            if not VERSION_NAME.fullmatch(name):
                raise VersionNotFoundError(f"{name!r} is not a version name (letters, digits, '.', '_', '-')")
            if not path.is_dir():
                raise VersionNotFoundError(f"no version directory {path}")
            version = await asyncio.to_thread(self._load, path)
        except Exception as e:
            self._refused[name] = stamp
            self._metrics.load_failures.inc()
            log.error("refused version %s, still serving %s: %s", name, self._name(), e)
            if isinstance(e, ServiceError):
                raise
            raise VersionRejectedError(f"version {name!r} failed to load: {e!r}") from e
        old = self._name()
        self._current = version
        self._refused.pop(name, None)
        self._metrics.swaps.inc()  # with the swap itself, so /metrics never lags /model
        self._metrics.served(old, version.name)
        log.info("now serving version %s (was %s)", version.name, old)
        # The replaced version's cycles are freed off the event loop (tens of milliseconds of destructors).
        await asyncio.to_thread(gc.collect)
        return version

    def _load(self, path: Path) -> ModelVersion:
        version = load_version(path, self._max_batch, self._min_index_recall)
        similar.prepare(version)  # what /similar reads, built here off the event loop (seconds at 25M ratings)
        try:
            version = self.derive(version)
        except Exception:  # the catalogue's changes must not refuse a version that loaded; they follow later
            log.exception("applying the catalogue to version %s failed; serving it without", path.name)
        try:
            self.on_load(version)
        except Exception:  # what is derived from a version must not refuse a version that loaded
            log.exception("preparing version %s after its load failed; serving it anyway", path.name)
        return version

    def offer(self, version: ModelVersion) -> None:
        """Serve `version`, the served one rebuilt (the catalogue changed); call on the event loop."""
        self._current = version

    def _name(self) -> str | None:
        return self._current.name if self._current else None

    async def sync(self) -> None:
        """Serve the pinned version, else the one CURRENT names, if not served already; never raises."""
        async with self._lock:
            try:
                target = self._pinned or self.read_current()
            except VersionNotFoundError:
                return  # logged and counted by read_current
            if target is None or target == self._name():
                return
            if target in self._refused and self._refused[target] == self._stamp(target):
                return  # already refused and unchanged since: retrying would only repeat the error
            with contextlib.suppress(ServiceError):  # logged and counted by _swap_in
                await self._swap_in(target)

    async def watch(self, poll_seconds: float) -> None:
        """Check for a new version every poll_seconds (just once when 0); run as a background task."""
        while True:
            try:
                await self.sync()
            except Exception:  # the watcher must outlive any surprise, or hot swap silently stops
                log.exception("checking for a new model version failed")
            if poll_seconds <= 0:
                return
            await asyncio.sleep(poll_seconds)

    async def reload(self) -> ModelVersion:
        """Load the pinned or CURRENT version again, even if served or refused before (admin).

        Raises:
            VersionNotFoundError, VersionRejectedError: and the served version stays.
        """
        async with self._lock:
            target = self._pinned or self.read_current()
            if target is None:
                raise VersionNotFoundError(f"{self.models_dir / CURRENT} is missing")
            return await self._swap_in(target)

    async def pin(self, name: str) -> ModelVersion:
        """Serve `name` and stop following CURRENT until unpinned: the rollback (admin).

        Raises:
            VersionNotFoundError, VersionRejectedError: the pin is not set and the served version stays.
        """
        async with self._lock:
            if name != self._name():
                await self._swap_in(name)
            self._pinned = name
            log.info("pinned version %s", name)
            return self.require()

    async def unpin(self) -> None:
        """Follow CURRENT again (admin); the swap happens now if CURRENT names another version."""
        async with self._lock:
            self._pinned = None
        await self.sync()
