"""What handlers are given: the app's Service, the served version and an admin check, as Depends aliases."""

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.artifacts import ModelVersion
from service.batcher import Batcher
from service.canary import Canary
from service.config import Settings
from service.errors import AdminAuthError, AdminDisabledError
from service.impressions import ImpressionWriter
from service.live_catalogue import LiveCatalogue
from service.metrics import Metrics
from service.online import OnlineMetrics
from service.popularity import RecentPopularity
from service.ratings import RatingsWriter
from service.registry import Registry


@dataclass(frozen=True)
class Service:
    """What routes need, built once per app and reached through the ServiceDep dependency."""

    settings: Settings
    registry: Registry
    batcher: Batcher
    ratings: RatingsWriter
    metrics: Metrics
    popularity: RecentPopularity  # the at-now fallback ranking
    catalogue: LiveCatalogue  # the catalogue store's changes, applied to the served version
    impressions: ImpressionWriter  # stamps answers, records them behind the request
    online: OnlineMetrics  # per-version online metrics from the impressions store
    canary: Canary  # the version beside CURRENT for a share of users


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
