"""Routes for operators and the page: health, readiness, metrics, the served model, and the page at /."""

from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import FileResponse

from service import catalogue
from service.dependencies import ServiceDep, VersionDep
from service.openapi import ERRORS
from service.responses import JSONBytes
from service.schemas import Health, ModelInfo, Readiness

STATIC = Path(__file__).with_name("static")  # the page at /: plain HTML, JS and CSS, no build step

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """The process is alive (says nothing about the model)."""
    return JSONBytes({"status": "ok"})


@router.get("/readyz", response_model=Readiness)
async def readyz(version: VersionDep) -> Response:
    """200 once a version is loaded and warmed up; 503 before."""
    return JSONBytes({"status": "ready", "version": version.name})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus exposition: requests, latency, batch sizes, served version, swaps, refused versions."""
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/model", response_model=ModelInfo)
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
        canary=service.canary.describe(),
        online=service.online.describe([version.name, *service.canary.served()]),
    )


@router.get(
    "/model/training_curve.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **ERRORS},
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
