"""Every replica follows the catalogue store: it folds the changes stored since its last read, every few seconds,
and serves the loaded version with them applied (service/live_version.py), without a restart or a retrain.

A movie added through POST /movies is embedded by the served version's own candidate tower (candidate_model:
its id is out of the tower's vocabulary, so its title, and its genres where the tower reads them, place it),
once per version, title and genres; its EASE prior columns, where the version has them, are borrowed from the
known movies it reads most like (service/borrowed_prior.py). The replica
that takes a change applies it before answering; the others within RECSYS_CATALOGUE_REFRESH_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from contract import manifest as layout
from contract.catalogue import (
    GENRE_SEPARATOR,
    CatalogueEntry,
    CatalogueStore,
    CatalogueStoreError,
    YearOutside,
    fold,
    title_with_year,
    title_year,
    title_year_within,
)
from service import similar
from service.artifacts import ModelVersion
from service.borrowed_prior import with_borrowed_prior
from service.live_version import base_of, catalogue_id_of, live_version

log = logging.getLogger(__name__)

EMBED_CHUNK = 1024  # movies per candidate-tower call


def embedding_title(entry: CatalogueEntry, years: tuple[int, int] | None, outside: YearOutside) -> str:
    """The title `entry` is read by in the candidate tower: with its year, read as `outside` says when it is not
    within `years`, the first and last years the version's titles name (contract.catalogue.title_year_within)."""
    title = title_with_year(entry.title or "", entry.year)
    return title if years is None else title_year_within(title, *years, outside)


def title_years(version: ModelVersion) -> tuple[int, int] | None:
    """The first and last release years `version`'s titles name (None: none names one)."""
    years = [year for movie in version.movies if (year := title_year(str(movie["title"]))) is not None]
    return (min(years), max(years)) if years else None


class LiveCatalogue:
    """The catalogue store's state as this replica last read it, and the served versions built from it."""

    def __init__(
        self, url: str, models_dir: Path, prior_neighbours: int = 10, year_outside: YearOutside = "drop"
    ) -> None:
        self.url = url
        self.models_dir = models_dir
        self.prior_neighbours = prior_neighbours  # Settings.borrowed_prior_neighbours
        self.year_outside = year_outside  # Settings.title_year_outside
        self._store: CatalogueStore | None = None
        self._entries: dict[str, CatalogueEntry] = {}  # replaced whole under _lock, read as one snapshot
        self._last_id = 0
        self._lock = threading.Lock()  # one read of the store at a time
        self._failing = False
        # base version -> its candidate tower and the embeddings it gave, dropped with the version.
        self._towers: weakref.WeakKeyDictionary[ModelVersion, tuple[Any, Any]] = weakref.WeakKeyDictionary()
        self._embedded: weakref.WeakKeyDictionary[ModelVersion, dict[tuple[str, str, str], np.ndarray]] = (
            weakref.WeakKeyDictionary()
        )
        self._years: weakref.WeakKeyDictionary[ModelVersion, tuple[int, int] | None] = weakref.WeakKeyDictionary()
        self._apply_lock = threading.Lock()  # the towers are loaded and called by one thread at a time

    @property
    def store(self) -> CatalogueStore:
        if self._store is None:
            raise RuntimeError("the catalogue store is not open: the app's lifespan opens it")
        return self._store

    @property
    def last_id(self) -> int:
        return self._last_id

    def entries(self) -> dict[str, CatalogueEntry]:
        return self._entries

    def open(self) -> None:
        """Connect, create the table unless present and read the whole catalogue once.

        Raises:
            CatalogueStoreError: the database cannot be reached or written; the message says what to fix.
        """
        self._store = CatalogueStore.with_schema(self.url)
        self.read()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def read(self) -> bool:
        """Fold in the changes stored since the last read; True if there were any. Blocking: a worker thread.

        A failing store keeps the last state (logged once per outage); the next read goes on from the last id.
        """
        with self._lock:
            try:
                changes = self.store.changes_after(self._last_id)
            except CatalogueStoreError as e:
                if not self._failing:
                    log.warning("the catalogue keeps its last state (changes <= %d): %s", self._last_id, e)
                self._failing = True
                return False
            if self._failing:
                log.info("the catalogue store answers again (now at change %d)", self._last_id)
            self._failing = False
            if not changes:
                return False
            self._entries = fold(dict(self._entries), changes)
            self._last_id = changes[-1].id
            return True

    def apply(self, base: ModelVersion) -> ModelVersion:
        """`base` with the catalogue as last read; blocking (the candidate tower may load): a worker thread."""
        entries, last_id = self._entries, self._last_id
        with self._apply_lock:
            served = live_version(base, entries, last_id, lambda added: self._embed(base, added))
        if served is not base:
            similar.extend(served, base)
        return served

    async def refresh(self, current: Callable[[], ModelVersion | None], offer: Callable[[ModelVersion], None]) -> None:
        """Read the store and, if the served version is behind it, build and offer the version that is not.

        `offer` serves a version built from the loaded one (Registry.offer), on the event loop.
        """
        await asyncio.to_thread(self.read)
        served = current()
        if served is None or catalogue_id_of(served) == self._last_id:
            return
        built = await asyncio.to_thread(self.apply, base_of(served))
        now = current()
        # Another refresh may have offered a newer state, or a new version loaded, while this one was built.
        if now is not None and base_of(now) is base_of(built) and catalogue_id_of(now) <= catalogue_id_of(built):
            offer(built)

    async def watch(
        self,
        current: Callable[[], ModelVersion | None],
        offer: Callable[[ModelVersion], None],
        seconds: float,
    ) -> None:
        """refresh() every `seconds`; run as a background task beside the registry's."""
        while True:
            try:
                await self.refresh(current, offer)
            except Exception:  # the task must outlive any surprise, or the catalogue silently stops following
                log.exception("following the catalogue store failed")
            await asyncio.sleep(seconds)

    def _embed(self, base: ModelVersion, added: Sequence[CatalogueEntry]) -> np.ndarray:
        """float32 [len(added), d]: each added movie through `base`'s candidate tower (its title, and its genres
        where the tower reads them), its prior columns borrowed, computed once per title and genres."""
        done = self._embedded.setdefault(base, {})
        if base not in self._years:
            self._years[base] = title_years(base)
        years, outside = self._years[base], self.year_outside
        keys = [
            (entry.movie_id, embedding_title(entry, years, outside), GENRE_SEPARATOR.join(entry.genres or ()))
            for entry in added
        ]
        missing = [key for key in dict.fromkeys(keys) if key not in done]
        if missing:
            _, tower = self._tower(base)
            # The inputs the version's signature names: movie_id and title, and genres where it was trained with them.
            names = tower.structured_input_signature[1]
            for start in range(0, len(missing), EMBED_CHUNK):
                chunk = missing[start : start + EMBED_CHUNK]
                movie_ids, titles, genres = zip(*chunk, strict=True)
                columns = {"movie_id": movie_ids, "title": titles, "genres": genres}
                out = tower(**{name: tf.constant(columns[name]) for name in names})["embedding"].numpy()
                if not np.isfinite(out).all():
                    raise ValueError(f"the candidate tower of {base.name} gave non-finite embeddings")
                out = with_borrowed_prior(base, out.astype(np.float32), self.prior_neighbours)
                done.update(zip(chunk, out, strict=True))
        return np.stack([done[key] for key in keys]) if keys else np.zeros((0, base.candidate_embeddings.shape[1]))

    def _tower(self, base: ModelVersion) -> tuple[Any, Any]:
        """`base`'s candidate SavedModel and its serving signature, loaded on first use."""
        loaded = self._towers.get(base)
        if loaded is None:
            model = tf.saved_model.load(str(self.models_dir / base.name / layout.CANDIDATE_MODEL))
            loaded = (model, model.signatures["serving_default"])
            self._towers[base] = loaded
        return loaded
