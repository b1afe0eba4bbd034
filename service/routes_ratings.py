"""Routes about ratings: storing new ones (POST /ratings) and reading a user's (GET /users/{user_id}/ratings)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam

from service import catalogue
from service.catalogue_admin import caught_up
from service.dependencies import ServiceDep, VersionDep
from service.errors import NotInCatalogueError
from service.openapi import ERRORS, request_body
from service.parsers import parse_ratings
from service.responses import JSONBytes
from service.schemas import RatingsRequest, RatingsStored, UserRating

router = APIRouter(tags=["ratings"])


@router.get("/users/{user_id}/ratings", response_model=list[UserRating], responses=ERRORS)
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
    responses=ERRORS,
    openapi_extra={"requestBody": request_body(RatingsRequest)},
)
async def add_ratings(request: Request, version: VersionDep, service: ServiceDep) -> Response:
    """Store one rating, or a batch as {"ratings": [...]}, durably; answers 201 with their ids once committed."""
    body = parse_ratings(await request.body())
    try:
        stored = await service.ratings.add(version, body)
    except NotInCatalogueError:
        # Perhaps a movie added through another replica since this one last read the catalogue store: read it
        # now and check once more, so a movie is rateable everywhere the moment its POST /movies is answered.
        newer = await caught_up(service)
        if newer is version:
            raise
        stored = await service.ratings.add(newer, body)
    return JSONBytes(stored, status_code=201)
