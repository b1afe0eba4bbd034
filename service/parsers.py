"""Request bodies and query strings read by hand into their schemas, with FastAPI's 422 for what breaks them.

Routes read their own input (service/routes_recommend.py says why); one parser per kind of input gives every
route the same answer to the same malformed request.
"""

import functools
from typing import TypeVar, get_origin

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from service.schemas import RATINGS_SHAPES, RatingsRequest

Model = TypeVar("Model", bound=BaseModel)


@functools.cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, f in model.model_fields.items() if get_origin(f.annotation) is list)


def _invalid(error: ValidationError, where: str) -> RequestValidationError:
    """Re-locate pydantic errors under 'query' or 'body', as FastAPI reports its own."""
    return RequestValidationError([{**e, "loc": (where, *e["loc"])} for e in error.errors(include_url=False)])


def parse_query(model: type[Model], query: QueryParams) -> Model:
    """Validate query parameters into `model`; list fields come from repeated parameters.

    Raises:
        RequestValidationError: mapped to a 422 like any FastAPI validation error.
    """
    lists = _list_fields(model)
    data = {key: query.getlist(key) if key in lists else value for key, value in query.items()}
    try:
        return model.model_validate(data, strict=False)  # a query string is text: "10" is read as 10
    except ValidationError as e:
        raise _invalid(e, "query") from None


UTF8_BOM = b"\xef\xbb\xbf"  # JSON must not start with one, but a parser may ignore it (RFC 8259): every route does


def parse_body(model: type[Model], body: bytes) -> Model:
    """Validate a JSON body into `model` in one pass (pydantic parses the bytes itself).

    Raises:
        RequestValidationError: mapped to a 422 like any FastAPI validation error.
    """
    try:
        return model.model_validate_json(body.removeprefix(UTF8_BOM))
    except ValidationError as e:
        raise _invalid(e, "body") from None


def parse_ratings(body: bytes) -> RatingsRequest:
    """parse_body for RatingsRequest: an error is located as the client wrote it, without the shape's tag.

    Raises:
        RequestValidationError: mapped to a 422 like any FastAPI validation error.
    """
    try:
        return RatingsRequest.model_validate_json(body.removeprefix(UTF8_BOM))
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *_untagged(err["loc"]))} for err in e.errors(include_url=False)]
        ) from None


def _untagged(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    return loc[1:] if loc and loc[0] in RATINGS_SHAPES else loc
