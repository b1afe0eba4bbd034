"""The app factory: `create_app(settings)` wires the service, its lifespan, middleware, errors and routes."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from contract.popularity import DAY_SECONDS
from service import (
    openapi,
    routes_admin,
    routes_catalogue,
    routes_movies,
    routes_operations,
    routes_ratings,
    routes_recommend,
)
from service.artifacts import ModelVersion, configure_tensorflow
from service.batcher import Batcher
from service.canary import new_canary
from service.config import Settings
from service.dependencies import Service
from service.error_handlers import add_error_handlers
from service.hot_route import HotRoute
from service.impressions import ImpressionWriter, open_impressions
from service.limits import BodyLimit
from service.live_catalogue import LiveCatalogue
from service.metrics import Metrics, MetricsMiddleware
from service.online import OnlineMetrics
from service.popularity import RecentPopularity
from service.ratings import RatingsWriter
from service.registry import Registry, freeze_runtime
from service.routes_recommend import answer_recommend_get

ROUTERS = (routes_recommend, routes_movies, routes_ratings, routes_operations, routes_admin, routes_catalogue)


class ServiceApp(FastAPI):
    """FastAPI, with GET /recommend answered before FastAPI sees it (service/hot_route.py)."""

    _hot: HotRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self._hot
        if hot is None:
            service: Service = self.state.service

            async def hot_recommend(query: QueryParams) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
                return await answer_recommend_get(service, query)

            hot = self._hot = HotRoute("/recommend", hot_recommend, service.metrics)
        if hot.takes(scope):
            await hot.answer(scope, send)
        else:
            await super().__call__(scope, receive, send)


def _served_by(registry: Registry) -> Callable[[], ModelVersion | None]:
    """What `registry` serves now, read at each call (the catalogue follower's view of it)."""
    return lambda: registry.current


def create_app(settings: Settings | None = None, requests_in_flight: Callable[[], int] | None = None) -> FastAPI:
    """Build the app; the model loads in the background after startup (/readyz says when).

    `requests_in_flight`: the server's count of requests being answered (service.limits), which lets a lone
    request skip the batcher's queue; without it every request is queued.
    """
    settings = settings or Settings()
    metrics = Metrics()
    registry = Registry(settings.models_dir, settings.max_batch, metrics, settings.min_index_recall)
    online = OnlineMetrics(
        settings.credit_window_days,
        settings.credit_settle_seconds,
        settings.impression_retention_days,
        metrics.registry,
    )
    service = Service(
        settings=settings,
        registry=registry,
        batcher=Batcher(settings.max_batch, settings.batch_in_thread, metrics.batch_size.observe, requests_in_flight),
        ratings=RatingsWriter(settings.ratings_url, settings.max_ratings_per_request, metrics.ratings_stored.inc),
        metrics=metrics,
        popularity=RecentPopularity(settings.popular_half_life_days * DAY_SECONDS),
        # The same database as the ratings.
        catalogue=LiveCatalogue(
            settings.ratings_url, settings.models_dir, settings.borrowed_prior_neighbours, settings.title_year_outside
        ),
        impressions=ImpressionWriter(
            settings.impression_queue,
            settings.impression_batch,
            settings.impression_flush_seconds,
            online.drop,
            online.written.inc,
            settings.impressions,
        ),
        online=online,
        canary=new_canary(settings, metrics, lambda: registry.current.name if registry.current else None),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tensorflow(settings.tf_threads)
        freeze_runtime()
        service.ratings.open()  # first: a database that cannot be opened stops startup with what to fix
        await asyncio.to_thread(service.catalogue.open)
        service.registry.derive = service.catalogue.apply
        service.canary.registry.derive = service.catalogue.apply  # canary users see the same catalogue
        impressions = open_impressions(service.ratings.store)
        service.impressions.start(settings.ratings_url)
        service.batcher.start()
        # A version is counted for the fallback in its loading thread, so it never serves the 1998 totals.
        service.registry.on_load = lambda version: service.popularity.refresh(version, service.ratings.store)
        canary = service.canary
        canary.registry.on_load = lambda version: canary.popularity.refresh(version, service.ratings.store)
        tasks = [
            asyncio.create_task(service.registry.watch(settings.poll_seconds), name="model-watcher"),
            asyncio.create_task(canary.registry.watch(settings.poll_seconds), name="canary-watcher"),
            asyncio.create_task(
                service.popularity.watch(
                    lambda: service.registry.current, lambda: service.ratings.store, settings.popular_refresh_seconds
                ),
                name="popularity-refresher",
            ),
            asyncio.create_task(
                canary.popularity.watch(
                    lambda: canary.registry.current, lambda: service.ratings.store, settings.popular_refresh_seconds
                ),
                name="canary-popularity-refresher",
            ),
            asyncio.create_task(
                service.online.watch(lambda: impressions, settings.online_refresh_seconds), name="online-metrics"
            ),
            *(
                asyncio.create_task(
                    service.catalogue.watch(_served_by(r), r.offer, settings.catalogue_refresh_seconds),
                    name=f"catalogue-follower-{name}",
                )
                for name, r in (("current", service.registry), ("canary", canary.registry))
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await service.batcher.stop()
            await asyncio.to_thread(service.impressions.stop)
            service.ratings.close()
            service.catalogue.close()

    app = ServiceApp(
        title="Movie recommendations",
        version="1",
        summary="Top-k movies for a user from a two-tower model and a ScaNN index, hot-swapped from models/.",
        lifespan=lifespan,
    )
    app.state.service = service
    openapi.install(app, settings)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    add_error_handlers(app, [route for routes in ROUTERS for route in routes.router.routes])
    for routes in ROUTERS:
        app.include_router(routes.router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # it counts every answer, 413s included
    app.mount("/static", StaticFiles(directory=routes_operations.STATIC), name="static")
    return app
