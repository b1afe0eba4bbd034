"""Admin routes, behind RECSYS_ADMIN_TOKEN: reload the served version, pin one (roll back), unpin, set the canary."""

from fastapi import APIRouter, Request

from service.dependencies import AdminDep, Service
from service.openapi import ADMIN_ERRORS, request_body
from service.parsers import parse_body
from service.schemas import AdminState, CanaryRequest, CanaryState, PinRequest

router = APIRouter(prefix="/admin", tags=["admin"], responses=ADMIN_ERRORS)


def _admin_state(service: Service) -> AdminState:
    current = service.registry.current
    return AdminState(version=current.name if current else None, pinned=service.registry.pinned)


@router.post("/reload", response_model=AdminState)
async def admin_reload(service: AdminDep) -> AdminState:
    """Load the pinned or CURRENT version now, even one refused before; the old one serves until it is ready."""
    await service.registry.reload()
    return _admin_state(service)


@router.post("/pin", response_model=AdminState, openapi_extra={"requestBody": request_body(PinRequest)})
async def admin_pin(request: Request, service: AdminDep) -> AdminState:
    """Serve this version and ignore CURRENT until unpinned: how to roll back."""
    body = parse_body(PinRequest, await request.body())
    await service.registry.pin(body.version)
    return _admin_state(service)


@router.delete("/pin", response_model=AdminState)
async def admin_unpin(service: AdminDep) -> AdminState:
    """Follow models/CURRENT again."""
    await service.registry.unpin()
    return _admin_state(service)


def _canary_state(service: Service) -> CanaryState:
    current, canary = service.registry.current, service.canary.registry.current
    return CanaryState(
        version=current.name if current else None, canary=canary.name if canary else None, share=service.canary.share
    )


@router.post("/canary", response_model=CanaryState, openapi_extra={"requestBody": request_body(CanaryRequest)})
async def admin_set_canary(request: Request, service: AdminDep) -> CanaryState:
    """Load this version as the canary, then point models/CANARY at it: every replica serves it to its share."""
    body = parse_body(CanaryRequest, await request.body())
    await service.canary.registry.set(body.version)
    return _canary_state(service)


@router.delete("/canary", response_model=CanaryState)
async def admin_clear_canary(service: AdminDep) -> CanaryState:
    """Remove models/CANARY: this replica stops serving the canary now, the others at their next poll."""
    await service.canary.registry.clear()
    return _canary_state(service)
