"""Routes that recommend: GET and POST /recommend, POST /recommend/batch."""

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.datastructures import QueryParams

from service import recommender
from service.artifacts import ModelVersion
from service.dependencies import Service, ServiceDep, VersionDep
from service.error_handlers import INTERNAL_ERROR, known_error
from service.errors import error_json
from service.openapi import ERRORS, query_parameters, request_body
from service.parsers import parse_body, parse_query
from service.responses import JSONBytes
from service.schemas import BatchRecommendRequest, BatchRecommendResponse, RecommendRequest, RecommendResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["recommend"])


async def _recommend(service: Service, params: RecommendRequest, current: ModelVersion | None = None) -> dict[str, Any]:
    """One answer from the version the user is served (service/canary.py), stamped and recorded behind it."""
    # Read once: a hot swap after this line does not change the answer.
    version = service.canary.version_for(current or service.registry.require(), params.user_id)
    stored = service.ratings.since(version, params.user_id)
    popular = service.canary.ranking(version, service.popularity)
    answer = await recommender.recommend(version, service.batcher, params, service.settings, stored, popular)
    return service.impressions.stamp(answer)


# The two /recommend routes read the request themselves instead of through FastAPI parameters and
# dependencies: on these 2 cores each dependency and a query-parameter model cost a large share of a bare
# endpoint (docs/serving-speed.md). The OpenAPI docs are declared by hand from the same schema.
@router.get(
    "/recommend",
    response_model=RecommendResponse,
    responses=ERRORS,
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
            known = INTERNAL_ERROR
        status, code, message, headers = known
        extra = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
        return status, error_json(code, message), extra


@router.post(
    "/recommend",
    response_model=RecommendResponse,
    responses=ERRORS,
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
    responses=ERRORS,
    openapi_extra={"requestBody": request_body(BatchRecommendRequest)},
)
async def recommend_batch(request: Request, version: VersionDep, service: ServiceDep) -> Response:
    """Several recommendation requests in one body, each answered by the version its user is served."""
    body = parse_body(BatchRecommendRequest, await request.body())

    async def answer(params: RecommendRequest) -> dict[str, Any]:
        return await _recommend(service, params, version)

    return JSONBytes(await recommender.recommend_batch(body.requests, service.settings, answer))
