"""Request and response bodies of the HTTP API, with the examples shown in the OpenAPI docs."""

import contextlib
import functools
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_origin

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from starlette.datastructures import QueryParams

MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant ISO-8601 can spell


def _to_unix_seconds(value: Any) -> Any:
    """Accept Unix seconds (number or digits) or an ISO-8601 date-time; a naive date-time is UTC."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be Unix seconds or an ISO-8601 date-time, not a boolean")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    with contextlib.suppress(ValueError):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"timestamp {value!r} is neither Unix seconds nor an ISO-8601 date-time (e.g. 1997-11-09T10:45:27Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


Timestamp = Annotated[
    int,
    BeforeValidator(_to_unix_seconds),
    Field(ge=0, le=MAX_TIMESTAMP),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"}],
            "description": "Unix seconds, or an ISO-8601 date-time (UTC when it has no offset).",
            "examples": [879024327, "1997-11-08T21:25:27Z"],
        }
    ),
]


class RecommendRequest(BaseModel):
    """Who to recommend for, when, how many, and what to leave out."""

    model_config = ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,  # user_id 42 and "42" are the same user
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

    user_id: str = Field(min_length=1, max_length=64, description="MovieLens user id, as a string.")
    timestamp: Timestamp | None = Field(default=None, description="When the user asks; defaults to now.")
    k: int = Field(default=10, ge=1, description="How many movies; at most RECSYS_MAX_K (default 100).")
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
        json_schema_extra={"examples": [{"requests": [{"user_id": "42", "k": 3}, {"user_id": "7", "k": 3}]}]},
    )

    # The upper bound is the RECSYS_MAX_BATCH_REQUESTS setting, checked by the recommender.
    requests: list[RecommendRequest] = Field(min_length=1)


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
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": "20261122T103000Z"}]})

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
        return model.model_validate(data)
    except ValidationError as e:
        raise _invalid(e, "query") from None


def parse_body(model: type[Model], body: bytes) -> Model:
    """Validate a JSON body into `model` in one pass (pydantic parses the bytes itself).

    Raises:
        RequestValidationError: mapped to a 422 like any FastAPI validation error.
    """
    try:
        return model.model_validate_json(body)
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
            "schema": field,
        }
        for name, field in schema["properties"].items()
    ]


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for a route that reads `model` from the JSON body by hand."""
    schema = model.model_json_schema()
    schema = _inline_refs(schema, schema.get("$defs", {}))
    return {"required": True, "content": {"application/json": {"schema": schema}}}


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

MAX_FUTURE_SECONDS = 86_400  # client clocks drift, but a rating further ahead than a day is a bug in the client
USER_ID = re.compile(r"0|[1-9][0-9]{0,17}")  # how an integer prints: training's int keys and stored strings agree


class NewRating(BaseModel):
    """One user's rating of one movie, as MovieLens records it."""

    model_config = ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,  # user_id 42 and "42" are the same user
        json_schema_extra={"examples": [{"user_id": "42", "movie_id": "50", "rating": 4.5, "timestamp": 893286638}]},
    )

    user_id: str = Field(
        description="MovieLens-style numeric user id: 1 to 18 digits, no leading zero.",
        json_schema_extra={"pattern": f"^(?:{USER_ID.pattern})$"},
    )
    movie_id: str = Field(min_length=1, max_length=64, description="A movie in the served version's catalogue.")
    rating: float = Field(strict=True, ge=0.5, le=5.0, multiple_of=0.5, description="0.5 to 5.0 in steps of 0.5.")
    timestamp: Timestamp | None = Field(
        default=None, description="When the user rated; defaults to now (server time); at most a day ahead."
    )

    @field_validator("user_id")
    @classmethod
    def _numeric_user_id(cls, user_id: str) -> str:
        if not USER_ID.fullmatch(user_id):
            raise ValueError(
                f"user_id {user_id[:40]!r} is not a MovieLens-style numeric id: 1 to 18 digits without a leading "
                "zero (training keys users by integer)"
            )
        return user_id

    @field_validator("timestamp")
    @classmethod
    def _not_in_the_future(cls, timestamp: int | None) -> int | None:
        now = int(time.time())
        if timestamp is not None and timestamp > now + MAX_FUTURE_SECONDS:
            raise ValueError(
                f"timestamp {timestamp} is more than a day ahead of the server's clock ({now}); "
                "send when the user rated, in Unix seconds or ISO-8601"
            )
        return timestamp


class NewRatings(BaseModel):
    """Several ratings stored together, in one transaction."""

    model_config = ConfigDict(extra="forbid")

    # The upper bound is the RECSYS_MAX_RATINGS_PER_REQUEST setting, checked when storing.
    ratings: list[NewRating] = Field(min_length=1, description="At most RECSYS_MAX_RATINGS_PER_REQUEST (1000).")


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
        return RatingsRequest.model_validate_json(body)
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
