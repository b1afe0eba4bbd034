"""Request and response bodies of the HTTP API, with the examples shown in the OpenAPI docs."""

import contextlib
import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar, get_origin

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from starlette.datastructures import QueryParams

MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant RFC 3339 can spell
MAX_INTEGER_ID = 2**53 - 1  # the largest id sent as a JSON integer: every JSON parser reads it exactly
# The schema's pattern for a date-time's year; "format": "date-time" (RFC 3339) states the rest.
DATE_TIME_YEARS = "^(19[7-9][0-9]|[2-9][0-9]{3})-"
_DATE_TIME = re.compile(
    DATE_TIME_YEARS[1:] + r"[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})", re.I
)
_SIGNED_DIGITS = re.compile(r"-?[0-9]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)

# A setting bounds some values (k, batch sizes); the schema marks them so that each app's OpenAPI states its own.
SETTING_BOUNDS = {"x-maximum-setting": "maximum", "x-maxItems-setting": "maxItems"}


def _date_time_seconds(text: str) -> int:
    """Unix seconds (floored) of an RFC 3339 date-time from 1970 to 9999, as its schema states."""
    if _DATE_TIME.fullmatch(text):
        with contextlib.suppress(ValueError):  # e.g. February 30th
            return (datetime.fromisoformat(text.upper()) - _EPOCH) // _ONE_SECOND
    raise ValueError(
        f"timestamp {text[:40]!r} is neither Unix seconds nor an ISO-8601 (RFC 3339) date-time from 1970 to 9999 "
        "with Z or an offset (e.g. 1997-11-09T10:45:27Z)"
    )


def _whole(value: Any) -> Any:
    """A JSON number without a fraction is an integer, as JSON Schema says: 10.0 is 10 (and true is no number)."""
    return int(value) if type(value) is float and value.is_integer() else value


def _to_unix_seconds(value: Any, info: ValidationInfo) -> Any:
    """Unix seconds (a JSON integer, or digits in a query string) or an RFC 3339 date-time string."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be Unix seconds or an ISO-8601 date-time, not a boolean")
    value = _whole(value)
    if isinstance(value, str):
        # A query string is all text (validated in python mode); in a JSON body Unix seconds are a number.
        if info.mode == "json" or not _SIGNED_DIGITS.fullmatch(value):
            return _date_time_seconds(value)
        value = int(value)
    if isinstance(value, int) and not 0 <= value <= MAX_TIMESTAMP:
        raise ValueError(
            f"timestamp {value} is out of range: Unix seconds must be greater than or equal to 0 and at most "
            f"{MAX_TIMESTAMP} (9999-12-31T23:59:59Z)"
        )
    return value  # an int; anything else is refused by the strict int after this


Timestamp = Annotated[
    int,
    BeforeValidator(_to_unix_seconds),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP},
                {"type": "string", "format": "date-time", "pattern": DATE_TIME_YEARS},
            ],
            "description": "Unix seconds, or an ISO-8601 (RFC 3339) date-time from 1970 to 9999 with Z or an offset.",
            "examples": [879024327, "1997-11-08T21:25:27Z"],
        }
    ),
]


def _integer_id_as_text(value: Any) -> Any:
    """An id sent as a JSON integer (42) is the same id as its decimal text ("42")."""
    value = _whole(value)
    if type(value) is int:  # exactly int: a boolean is no id
        if not 0 <= value <= MAX_INTEGER_ID:
            raise ValueError(f"id {str(value)!r} is an integer outside 0 to {MAX_INTEGER_ID}: send it as a string")
        return str(value)
    return value


def _text_or_integer(text: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [text, {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_ID}]})


# user_id 42 and "42" are the same user; an integer id is 0 to MAX_INTEGER_ID.
UserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    BeforeValidator(_integer_id_as_text),
    _text_or_integer({"type": "string", "minLength": 1, "maxLength": 64}),
]


class RecommendRequest(BaseModel):
    """Who to recommend for, when, how many, and what to leave out."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # k: true or exclude: [0] is a client bug, not 1 or "0"
        json_schema_extra={
            "examples": [
                {"user_id": "42", "timestamp": 879024327, "k": 10},
                {
                    "user_id": "42",
                    "timestamp": "1997-11-08T21:25:27Z",
                    "k": 5,
                    "exclude_seen": True,
                    "exclude": ["50"],
                    "genres": ["Comedy"],
                },
            ]
        },
    )

    user_id: UserId = Field(description="MovieLens user id, as a string (an integer is read as its digits).")
    timestamp: Timestamp | None = Field(default=None, description="When the user asks; defaults to now.")
    k: Annotated[int, BeforeValidator(_whole)] = Field(
        default=10,
        ge=1,
        description="How many movies; at most RECSYS_MAX_K (default 100).",
        json_schema_extra={"x-maximum-setting": "max_k"},
    )
    exclude_seen: bool = Field(default=True, description="Leave out the movies the user rated in training.")
    exclude: list[str] = Field(default_factory=list, max_length=1000, description="movie_ids to leave out.")
    genres: list[str] = Field(
        default_factory=list, max_length=50, description="Keep only movies with at least one of these genres."
    )
    history: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="movie_ids the user rated, newest first, for a user the service has not seen: they become "
        "the newest part of the user's history (and are excluded like seen movies).",
    )


class RecommendedMovie(BaseModel):
    rank: int = Field(description="1 for the best match.")
    movie_id: str
    title: str
    genres: list[str]
    score: float | None = Field(
        description="Dot product of the user and movie embeddings; null when the "
        "answer comes from the popularity ranking (unknown user)."
    )


class RecommendResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "42",
                    "timestamp": 879024327,
                    "effective_timestamp": 879024327,
                    "model_version": "20261122T103000Z",
                    "known_user": True,
                    "personalised": True,
                    "history_used": 50,
                    "items": [
                        {
                            "rank": 1,
                            "movie_id": "313",
                            "title": "Titanic (1997)",
                            "genres": ["Action", "Drama", "Romance"],
                            "score": 7.31,
                        }
                    ],
                }
            ]
        }
    )

    user_id: str
    timestamp: int = Field(description="The moment asked for (now when the request gave none).")
    effective_timestamp: int = Field(
        description="The moment the model used: the asked one clamped into the version's training time range."
    )
    model_version: str
    known_user: bool = Field(description="The version was trained on this user_id.")
    personalised: bool = Field(
        description="Answered by the model from the user's id and history; false: the popularity ranking "
        "(a user with no ratings anywhere)."
    )
    history_used: int = Field(description="Movies of the user's history the query model read.")
    items: list[RecommendedMovie] = Field(description="Best first; k distinct movies when the catalogue allows.")


class BatchRecommendRequest(BaseModel):
    """Several recommendation requests answered together (at most RECSYS_MAX_BATCH_REQUESTS, default 64)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"requests": [{"user_id": "42", "k": 3}, {"user_id": "7", "k": 3}]}]},
    )

    # The upper bound is the RECSYS_MAX_BATCH_REQUESTS setting, checked by the recommender.
    requests: list[RecommendRequest] = Field(
        min_length=1, json_schema_extra={"x-maxItems-setting": "max_batch_requests"}
    )


class BatchRecommendResponse(BaseModel):
    results: list[RecommendResponse] = Field(description="One answer per request, in request order.")


class SimilarResponse(BaseModel):
    movie_id: str
    title: str
    genres: list[str]
    model_version: str
    items: list[RecommendedMovie] = Field(description="Most similar first (dot product of movie embeddings).")


class ModelInfo(BaseModel):
    version: str = Field(description="The version served (a directory name under models/).")
    created_at: str | None
    loaded_at: datetime
    pinned: str | None = Field(description="The version pinned by an admin (rollback), if any.")
    num_movies: int
    num_known_users: int = Field(description="Users with a seen list in this version (personalised answers).")
    embedding_dim: int
    config: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    index: dict[str, Any] = Field(description="ScaNN index kind, parameters and measured recall.")
    settings: dict[str, Any] = Field(description="The serving settings (the admin token is never shown).")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    version: str | None


class PinRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"version": "20261122T103000Z"}]}
    )

    version: str = Field(min_length=1, max_length=128, description="A version directory name under models/.")


class AdminState(BaseModel):
    version: str | None = Field(description="The version now served.")
    pinned: str | None = Field(description="The pinned version, or null when following models/CURRENT.")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["query.k: Input should be greater than or equal to 1"])


class ErrorResponse(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


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


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI parameters for a route that reads `model` from the query string by hand."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": field.get("description", ""),
            "schema": _without_null(field),
        }
        for name, field in schema["properties"].items()
    ]


def _without_null(field: dict[str, Any]) -> dict[str, Any]:
    """A query string cannot spell null: an optional parameter is left out instead."""
    options = [option for option in field.get("anyOf", []) if option != {"type": "null"}]
    if len(options) == len(field.get("anyOf", [])):
        return field
    rest = {key: value for key, value in field.items() if key != "anyOf"}
    return {**options[0], **rest} if len(options) == 1 else {**rest, "anyOf": options}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for a route that reads `model` from the JSON body by hand."""
    schema = model.model_json_schema()
    schema = _inline_refs(schema, schema.get("$defs", {}))
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def with_settings(schema: Any, settings: Mapping[str, Any]) -> Any:
    """`schema` with the bounds settings set filled in: {"x-maximum-setting": "max_k"} becomes {"maximum": 100}."""
    if isinstance(schema, list):
        return [with_settings(item, settings) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        SETTING_BOUNDS.get(key, key): settings[value] if key in SETTING_BOUNDS else with_settings(value, settings)
        for key, value in schema.items()
    }


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """Replace each "#/$defs/Name" with its definition: inside an OpenAPI document such a reference points nowhere."""
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline_refs(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
    return {key: _inline_refs(value, defs) for key, value in schema.items() if key != "$defs"}


# --- POST /ratings ------------------------------------------------------------------------------------------

USER_ID = re.compile(r"0|[1-9][0-9]{0,17}")  # how an integer prints: training's int keys and stored strings agree


def _numeric_user_id(user_id: str) -> str:
    if not USER_ID.fullmatch(user_id):
        raise ValueError(
            f"user_id {user_id[:40]!r} is not a MovieLens-style numeric id: 1 to 18 digits without a leading "
            "zero (training keys users by integer)"
        )
    return user_id


NumericUserId = Annotated[
    str,
    AfterValidator(_numeric_user_id),
    BeforeValidator(_integer_id_as_text),
    _text_or_integer({"type": "string", "pattern": f"^(?:{USER_ID.pattern})$"}),
]
MovieId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    BeforeValidator(_integer_id_as_text),
    _text_or_integer({"type": "string", "minLength": 1, "maxLength": 64}),
]


class NewRating(BaseModel):
    """One user's rating of one movie, as MovieLens records it."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"user_id": "42", "movie_id": "50", "rating": 4.5, "timestamp": 893286638}]},
    )

    user_id: NumericUserId = Field(description="MovieLens-style numeric user id: 1 to 18 digits, no leading zero.")
    movie_id: MovieId = Field(description="A movie in the served version's catalogue.")
    rating: float = Field(ge=0.5, le=5.0, multiple_of=0.5, description="0.5 to 5.0 in steps of 0.5.")
    timestamp: Timestamp | None = Field(
        default=None, description="When the user rated; defaults to now (server time); at most a day ahead."
    )


class NewRatings(BaseModel):
    """Several ratings stored together, in one transaction."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # The upper bound is the RECSYS_MAX_RATINGS_PER_REQUEST setting, checked when storing.
    ratings: list[NewRating] = Field(
        min_length=1,
        description="At most RECSYS_MAX_RATINGS_PER_REQUEST (1000).",
        json_schema_extra={"x-maxItems-setting": "max_ratings_per_request"},
    )


def _ratings_shape(body: Any) -> str:
    return "batch" if isinstance(body, dict) and "ratings" in body else "one"


_RATINGS_SHAPES = ("one", "batch")
# Chosen by shape, so that a bad field is reported once rather than once per member of the union.
OneOrMoreRatings = Annotated[
    Annotated[NewRating, Tag("one")] | Annotated[NewRatings, Tag("batch")], Discriminator(_ratings_shape)
]


class RatingsRequest(RootModel[OneOrMoreRatings]):
    """One rating object, or a batch of them as {"ratings": [...]}."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user_id": "42", "movie_id": "50", "rating": 4.5, "timestamp": 893286638},
                {
                    "ratings": [
                        {"user_id": "42", "movie_id": "50", "rating": 4.5, "timestamp": "1998-04-23T00:30:38Z"},
                        {"user_id": 42, "movie_id": 181, "rating": 3.0},
                    ]
                },
            ]
        }
    )


class RatingsStored(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"stored": 2, "ids": [1041, 1042]}]})

    stored: int = Field(description="How many ratings were committed.")
    ids: list[int] = Field(description="Their ids in the ratings store, in request order.")


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
    return loc[1:] if loc and loc[0] in _RATINGS_SHAPES else loc


# --- the page's reads: catalogue search, a user's ratings -------------------------------------------------------


class Movie(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"movie_id": "1", "title": "Toy Story (1995)", "genres": ["Animation"]}]}
    )

    movie_id: str
    title: str
    genres: list[str]


class UserRating(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "movie_id": "50",
                    "title": "Star Wars (1977)",
                    "timestamp": 893286638,
                    "source": "stored",
                    "rating": 4.5,
                }
            ]
        }
    )

    movie_id: str
    title: str | None = Field(description="null when the served catalogue lacks the movie (a stored rating).")
    timestamp: int = Field(description="When the user rated, Unix seconds.")
    source: Literal["version", "stored"] = Field(
        description="version: in the served version's training data; stored: posted to /ratings since."
    )
    rating: float | None = Field(description="null for a version's ratings: the version keeps only what and when.")
