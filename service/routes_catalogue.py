"""Admin routes that change the catalogue while the service runs: add movies, change or withdraw one."""

from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service import catalogue_admin
from service.catalogue_schemas import MOVIES_SHAPES, CatalogueMovie, MoviePatch, MoviesAdded, MoviesRequest
from service.dependencies import AdminDep, VersionDep
from service.openapi import ADMIN_ERRORS, request_body
from service.parsers import UTF8_BOM, parse_body
from service.responses import JSONBytes

router = APIRouter(tags=["catalogue"], responses={**ADMIN_ERRORS, 409: ADMIN_ERRORS[422]})


@router.post(
    "/movies",
    status_code=201,
    response_model=MoviesAdded,
    openapi_extra={"requestBody": request_body(MoviesRequest)},
)
async def add_movies(request: Request, version: VersionDep, service: AdminDep) -> Response:
    """Add one movie, or a batch as {"movies": [...]}; 201 once committed, rateable and recommendable at once."""
    body = parse_movies(await request.body())
    return JSONBytes(await catalogue_admin.add_movies(service, version, body), status_code=201)


@router.patch(
    "/movies/{movie_id}", response_model=CatalogueMovie, openapi_extra={"requestBody": request_body(MoviePatch)}
)
async def change_movie(
    movie_id: Annotated[str, PathParam(min_length=1, max_length=64, examples=["5001"])],
    request: Request,
    version: VersionDep,
    service: AdminDep,
) -> Response:
    """Change a movie's title, genres or year, or withdraw it (available: false) from every answer and restore it."""
    body = parse_body(MoviePatch, await request.body())
    return JSONBytes(await catalogue_admin.change_movie(service, version, movie_id, body))


def parse_movies(body: bytes) -> MoviesRequest:
    """parse_body for MoviesRequest: an error is located as the client wrote it, without the shape's tag.

    Raises:
        RequestValidationError: mapped to a 422 like any FastAPI validation error.
    """
    try:
        return MoviesRequest.model_validate_json(body.removeprefix(UTF8_BOM))
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *_untagged(err["loc"]))} for err in e.errors(include_url=False)]
        ) from None


def _untagged(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    return loc[1:] if loc and loc[0] in MOVIES_SHAPES else loc
