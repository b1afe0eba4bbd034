"""Routes about movies: title search in the catalogue, and the movies similar to one."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from service import catalogue, similar
from service.dependencies import ServiceDep, VersionDep
from service.openapi import ERRORS
from service.responses import JSONBytes
from service.schemas import Movie, SimilarResponse

router = APIRouter()


@router.get("/movies/{movie_id}/similar", response_model=SimilarResponse, responses=ERRORS, tags=["recommend"])
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
    genres: Annotated[
        list[str] | None,
        Query(description="Keep only movies with at least one of these genres (repeat it: genres=Drama&genres=War)."),
    ] = None,
) -> Response:
    """The k movies most similar to this one: embedding cosine blended with item-kNN and genre overlap
    (service/similar.py)."""
    return JSONBytes(similar.similar(version, movie_id, k, service.settings, genres))


@router.get("/movies", response_model=list[Movie], responses=ERRORS, tags=["catalogue"])
async def search_movies(
    version: VersionDep,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Part of a title, in any case.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """Movies whose title contains q (case-insensitive), most rated first."""
    return JSONBytes(catalogue.search(version, q, limit))
