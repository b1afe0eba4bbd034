"""The FastAPI app: factory, lifespan, routes (a few lines each) and the one place errors become HTTP."""

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from contract.ratings import StoredRating
from service import catalogue, recommender
from service.artifacts import ModelVersion, configure_tensorflow
from service.batcher import Batcher
from service.config import Settings
from service.errors import (
    AdminAuthError,
    AdminDisabledError,
    FutureTimestampError,
    InvalidRequestError,
    MissingFileError,
    NoModelError,
    NotInCatalogueError,
    RatingsUnavailableError,
    ServiceError,
    UnknownMovieError,
    UnknownUserError,
    VersionNotFoundError,
    VersionRejectedError,
)
from service.hot_route import HotRoute
from service.limits import BodyLimit
from service.metrics import Metrics, MetricsMiddleware
from service.ratings import RatingsWriter
from service.registry import Registry, freeze_runtime
from service.schemas import (
    AdminState,
    BatchRecommendRequest,
    BatchRecommendResponse,
    ErrorResponse,
    Health,
    ModelInfo,
    Movie,
    PinRequest,
    RatingsRequest,
    RatingsStored,
    Readiness,
    RecommendRequest,
    RecommendResponse,
    SimilarResponse,
    UserRating,
    parse_body,
    parse_query,
    parse_ratings,
    query_parameters,
    request_body,
    with_settings,
)

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request the client abandoned; counted, never sent

STATIC = Path(__file__).with_name("static")  # the page at /: plain HTML, JS and CSS, no build step

# The one mapping from domain errors to HTTP: status and a stable machine-readable code.
ERROR_STATUS: dict[type[ServiceError], tuple[int, str]] = {
    InvalidRequestError: (422, "invalid_request"),  # the request breaks its OpenAPI schema
    NotInCatalogueError: (422, "not_in_catalogue"),  # valid, but the served version lacks a genre or movie
    FutureTimestampError: (422, "timestamp_in_future"),
    UnknownUserError: (404, "unknown_user"),
    UnknownMovieError: (404, "unknown_movie"),
    MissingFileError: (404, "file_not_found"),
    VersionNotFoundError: (404, "version_not_found"),
    VersionRejectedError: (422, "version_rejected"),
    NoModelError: (503, "no_model"),
    RatingsUnavailableError: (503, "ratings_unavailable"),
    AdminAuthError: (401, "unauthorized"),
    AdminDisabledError: (403, "admin_disabled"),
}


class JSONBytes(Response):
    """orjson-encoded JSON, returned straight from handlers so FastAPI skips re-validating the response."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Every error answer has this body: {"error": {"code": ..., "message": ...}}."""
    return JSONBytes({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def known_error(exc: Exception) -> tuple[int, str, str, dict[str, str] | None] | None:
    """(status, code, message, headers) for a domain or validation error; None for anything else (a 500)."""
    if isinstance(exc, ServiceError):
        status, code = next(ERROR_STATUS[kind] for kind in type(exc).__mro__ if kind in ERROR_STATUS)
        return status, code, exc.message, {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RequestValidationError):
        return 422, "invalid_request", _describe(exc), None
    return None


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


@dataclass(frozen=True)
class Service:
    """What routes need, built once per app and reached through the ServiceDep dependency."""

    settings: Settings
    registry: Registry
    batcher: Batcher
    ratings: RatingsWriter
    metrics: Metrics


async def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def _version(request: Request) -> ModelVersion:
    # Read once per request: a hot swap after this line does not change what this request uses.
    return request.app.state.service.registry.require()  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="RECSYS_ADMIN_TOKEN")


async def _admin(
    service: Annotated[Service, Depends(_service)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Service:
    # No token: 401, which asks for one. A token while admin is off: 403, as no token would help. Wrong: 401.
    token = service.settings.admin_token
    if credentials is None:
        disabled = " (this server has none set, so admin endpoints are disabled)" if token is None else ""
        raise AdminAuthError(f"missing admin token; send 'Authorization: Bearer <RECSYS_ADMIN_TOKEN>'{disabled}")
    if token is None:
        raise AdminDisabledError("admin endpoints are disabled; set RECSYS_ADMIN_TOKEN to enable them")
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise AdminAuthError("wrong admin token; send 'Authorization: Bearer <RECSYS_ADMIN_TOKEN>'")
    return service


ServiceDep = Annotated[Service, Depends(_service)]
VersionDep = Annotated[ModelVersion, Depends(_version)]
AdminDep = Annotated[Service, Depends(_admin)]

_errors: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (404, 422, 503)}
_body_errors = {**_errors, 413: {"model": ErrorResponse, "description": "Body over RECSYS_MAX_BODY_BYTES"}}
_challenge = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
_admin_errors: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or a wrong admin token", "headers": _challenge},
    403: {"model": ErrorResponse, "description": "A token, but admin endpoints are disabled (no RECSYS_ADMIN_TOKEN)"},
    **{status: {"model": ErrorResponse} for status in (404, 422)},
}
router = APIRouter()


async def _recommend(service: Service, params: RecommendRequest) -> dict[str, Any]:
    version = service.registry.require()  # read once: a hot swap after this line does not change the answer
    stored = service.ratings.since(version, params.user_id)
    return await recommender.recommend(version, service.batcher, params, service.settings, stored)


# The two /recommend routes read the request themselves instead of through FastAPI parameters and
# dependencies: on these 2 cores each dependency measured ~40 us of CPU and a query-parameter model ~70 us,
# against ~185 us for a whole bare endpoint. The OpenAPI docs are declared by hand from the same schema.
@router.get(
    "/recommend",
    response_model=RecommendResponse,
    responses=_errors,
    tags=["recommend"],
    openapi_extra={"parameters": query_parameters(RecommendRequest)},
)
async def recommend_get(request: Request) -> Response:
    """Top-k movies for a user at a timestamp; lists as repeated parameters (`&genres=Comedy&genres=Drama`)."""
    status, body, headers = await answer_recommend_get(request.app.state.service, request.query_params)
    return Response(body, status, headers={k.decode(): v.decode() for k, v in headers}, media_type="application/json")


async def answer_recommend_get(service: Service, query: QueryParams) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """GET /recommend from its query string to (status, JSON body, extra headers), errors included: one
    function for the FastAPI route and for service/hot_route.py, which answers most GETs without the router."""
    try:
        params = parse_query(RecommendRequest, query)
        return 200, orjson.dumps(await _recommend(service, params)), []
    except Exception as exc:
        known = known_error(exc)
        if known is None:
            log.exception("unhandled error on GET /recommend", exc_info=exc)
            known = (500, "internal_error", "internal error; the server log has the details", None)
        status, code, message, headers = known
        body = orjson.dumps({"error": {"code": code, "message": message}})
        return status, body, [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]


@router.post(
    "/recommend",
    response_model=RecommendResponse,
    responses=_body_errors,
    tags=["recommend"],
    openapi_extra={"requestBody": request_body(RecommendRequest)},
)
async def recommend_post(request: Request) -> Response:
    """Top-k movies for a user at a timestamp, with exclusions and a genre filter."""
    service: Service = request.app.state.service
    body = parse_body(RecommendRequest, await request.body())
    return JSONBytes(await _recommend(service, body))


# Every JSON body is read by hand, as /recommend's is: one parser, so one answer to a malformed body everywhere.
@router.post(
    "/recommend/batch",
    response_model=BatchRecommendResponse,
    responses=_body_errors,
    tags=["recommend"],
    openapi_extra={"requestBody": request_body(BatchRecommendRequest)},
)
async def recommend_batch(request: Request, version: VersionDep, service: ServiceDep) -> Response:
    """Several recommendation requests in one body, all answered from the same version."""
    body = parse_body(BatchRecommendRequest, await request.body())

    def stored_for(user_id: str) -> list[StoredRating]:
        return service.ratings.since(version, user_id)

    batch = await recommender.recommend_batch(version, service.batcher, body.requests, service.settings, stored_for)
    return JSONBytes(batch)


@router.get("/movies/{movie_id}/similar", response_model=SimilarResponse, responses=_errors, tags=["recommend"])
async def similar_movies(
    movie_id: Annotated[str, PathParam(examples=["1"])],
    version: VersionDep,
    service: ServiceDep,
    k: Annotated[
        int,
        Query(
            ge=1, description="How many movies; at most RECSYS_MAX_K.", json_schema_extra={"x-maximum-setting": "max_k"}
        ),
    ] = 10,
) -> Response:
    """The k movies closest to this one in the candidate embedding space."""
    return JSONBytes(recommender.similar(version, movie_id, k, service.settings))


@router.get("/movies", response_model=list[Movie], responses=_errors, tags=["catalogue"])
async def search_movies(
    version: VersionDep,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Part of a title, in any case.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """Movies whose title contains q (case-insensitive), most rated first."""
    return JSONBytes(catalogue.search(version, q, limit))


@router.get("/users/{user_id}/ratings", response_model=list[UserRating], responses=_errors, tags=["ratings"])
async def user_ratings(
    user_id: Annotated[str, PathParam(min_length=1, max_length=64)],
    version: VersionDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The user's ratings, newest first: the served version's (no values kept) and those stored since."""
    stored = service.ratings.since(version, user_id)
    return JSONBytes(catalogue.user_ratings(version, user_id, stored, limit))


@router.post(
    "/ratings",
    status_code=201,
    response_model=RatingsStored,
    responses=_body_errors,
    tags=["ratings"],
    openapi_extra={"requestBody": request_body(RatingsRequest)},
)
async def add_ratings(request: Request, version: VersionDep, service: ServiceDep) -> Response:
    """Store one rating, or a batch as {"ratings": [...]}, durably; answers 201 with their ids once committed."""
    body = parse_ratings(await request.body())
    return JSONBytes(await service.ratings.add(version, body), status_code=201)


@router.get("/healthz", response_model=Health, tags=["operations"])
async def healthz() -> Response:
    """The process is alive (says nothing about the model)."""
    return JSONBytes({"status": "ok"})


@router.get("/readyz", response_model=Readiness, responses={503: {"model": ErrorResponse}}, tags=["operations"])
async def readyz(version: VersionDep) -> Response:
    """200 once a version is loaded and warmed up; 503 before."""
    return JSONBytes({"status": "ready", "version": version.name})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    tags=["operations"],
)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus exposition: requests, latency, batch sizes, served version, swaps, refused versions."""
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/model", response_model=ModelInfo, responses={503: {"model": ErrorResponse}}, tags=["operations"])
async def model_info(version: VersionDep, service: ServiceDep) -> ModelInfo:
    """The served version: when it was made, its training config, offline metrics and index recall."""
    manifest = version.manifest
    return ModelInfo(
        version=version.name,
        created_at=manifest.created_at,
        loaded_at=datetime.fromtimestamp(version.loaded_at, UTC),
        pinned=service.registry.pinned,
        num_movies=version.num_movies,
        num_known_users=len(version.user_rows),
        embedding_dim=manifest.embedding_dim,
        config=manifest.config,
        data=manifest.data.model_dump(),
        metrics=manifest.metrics.model_dump(),
        index=manifest.index.model_dump(),
        settings=service.settings.public(),
    )


@router.get(
    "/model/training_curve.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_errors},
    tags=["operations"],
)
async def training_curve(version: VersionDep, service: ServiceDep) -> Response:
    """The served version's training curve: held-out top-100 accuracy against epoch."""
    return Response(catalogue.training_curve(service.settings.models_dir, version), media_type="image/png")


# The page loads only its own files: even a title that slipped into the DOM as HTML could run nothing.
_PAGE_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The page: recommendations, ratings, similar movies and the model card, over this public API."""
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": _PAGE_POLICY})


def _admin_state(service: Service) -> AdminState:
    current = service.registry.current
    return AdminState(version=current.name if current else None, pinned=service.registry.pinned)


@router.post("/admin/reload", response_model=AdminState, responses=_admin_errors, tags=["admin"])
async def admin_reload(service: AdminDep) -> AdminState:
    """Load the pinned or CURRENT version now, even one refused before; the old one serves until it is ready."""
    await service.registry.reload()
    return _admin_state(service)


@router.post(
    "/admin/pin",
    response_model=AdminState,
    responses={**_admin_errors, 413: _body_errors[413]},
    tags=["admin"],
    openapi_extra={"requestBody": request_body(PinRequest)},
)
async def admin_pin(request: Request, service: AdminDep) -> AdminState:
    """Serve this version and ignore CURRENT until unpinned: how to roll back."""
    body = parse_body(PinRequest, await request.body())
    await service.registry.pin(body.version)
    return _admin_state(service)


@router.delete("/admin/pin", response_model=AdminState, responses=_admin_errors, tags=["admin"])
async def admin_unpin(service: AdminDep) -> AdminState:
    """Follow models/CURRENT again."""
    await service.registry.unpin()
    return _admin_state(service)


def _describe(exc: RequestValidationError) -> str:
    """'query.k: Input should be greater than or equal to 1; body.user_id: Field required'."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        reason = str(error.get("ctx", {}).get("error", ""))
        if error.get("type") == "json_invalid" and reason not in message:
            message = f"{message} ({reason})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def _allow(request: Request, exc: StarletteHTTPException) -> Mapping[str, str] | None:
    """A 405's Allow header with every method the API takes at this path, not only the first route's."""
    path = request.scope["path"]
    routes = [route for route in router.routes if isinstance(route, APIRoute) and route.path_regex.match(path)]
    methods = {method for route in routes for method in route.methods or ()}
    return {"Allow": ", ".join(sorted(methods))} if methods else exc.headers


def _add_error_handlers(app: FastAPI) -> None:
    async def domain_or_validation_error(request: Request, exc: Exception) -> Response:
        known = known_error(exc)
        assert known is not None
        return error_response(*known)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        headers = _allow(request, exc) if exc.status_code == 405 else exc.headers
        return error_response(exc.status_code, code, str(exc.detail), headers)

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client hung up before its body arrived: nobody reads this answer, and it is no server error.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(CLIENT_CLOSED_REQUEST, "client_closed_request", "the client closed the connection")

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal error; the server log has the details")

    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(ServiceError, domain_or_validation_error)
    app.add_exception_handler(RequestValidationError, domain_or_validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def create_app(settings: Settings | None = None, requests_in_flight: Callable[[], int] | None = None) -> FastAPI:
    """Build the app; the model loads in the background after startup (/readyz says when).

    `requests_in_flight`: the server's count of requests being answered (service.limits), which lets a lone
    request skip the batcher's queue; without it every request is queued.
    """
    settings = settings or Settings()
    metrics = Metrics()
    service = Service(
        settings=settings,
        registry=Registry(settings.models_dir, settings.max_batch, metrics, settings.min_index_recall),
        batcher=Batcher(settings.max_batch, settings.batch_in_thread, metrics.batch_size.observe, requests_in_flight),
        ratings=RatingsWriter(settings.ratings_url, settings.max_ratings_per_request, metrics.ratings_stored.inc),
        metrics=metrics,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tensorflow(settings.tf_threads)
        freeze_runtime()
        service.ratings.open()  # first: a database that cannot be opened stops startup with what to fix
        service.batcher.start()
        watcher = asyncio.create_task(service.registry.watch(settings.poll_seconds), name="model-watcher")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await service.batcher.stop()
            service.ratings.close()

    app = ServiceApp(
        title="Movie recommendations",
        version="1",
        summary="Top-k movies for a user from a two-tower model and a ScaNN index, hot-swapped from models/.",
        lifespan=lifespan,
    )
    app.state.service = service
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """The schema with this app's settings in it: the k and batch-size bounds it enforces."""
        if app.openapi_schema is None:
            app.openapi_schema = with_settings(generate_openapi(), settings.model_dump())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _add_error_handlers(app)
    app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # it counts every answer, 413s included
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
