"""Request and response bodies of the HTTP API, with the examples shown in the OpenAPI docs."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, RootModel, Tag

from service.fields import MovieId, NumericUserId, Timestamp, UserId, whole


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
    k: Annotated[int, BeforeValidator(whole)] = Field(
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
    explain: bool = Field(
        default=False,
        description="Give each personalised movie `because`: up to three of the user's rated movies without "
        "which its score would fall most (one more query-tower call per history movie, batched).",
    )


class MovieRef(BaseModel):
    movie_id: str
    title: str


class RecommendedMovie(BaseModel):
    rank: int = Field(description="1 for the best match.")
    movie_id: str
    title: str
    genres: list[str]
    score: float | None = Field(
        description="The score the movie is ranked by: the dot product of the served query and movie vectors "
        "(the towers' score plus the user's predicted stars, scaled), less a demotion when the movie is predicted "
        "below the user's own average and among the answer's best 100 (shown no lower than the first score after "
        "those 100); null when the answer comes from the popularity ranking (unknown user)."
    )
    because: list[MovieRef] | None = Field(
        default=None,
        description="With explain=true on a personalised answer: the user's rated movies (at most three, the "
        "strongest first) without which this movie would score lowest; null otherwise.",
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
                    "recommendation_id": "3f2b9c0e5d7a4e1f8b6c2a9d0e4f7b1c",
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
    model_version: str = Field(description="The version that produced this answer (CURRENT's, or the canary's).")
    recommendation_id: str = Field(
        description="This answer's id; what it showed is recorded under it, and ratings that follow are credited to it."
    )
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
    items: list[RecommendedMovie] = Field(
        description="Most similar first: 0.5 x cosine of the candidate embeddings + 0.5 x item-kNN over the "
        "version's ratings + 0.1 x the overlap of the two movies' genres (service/similar.py)."
    )


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
    canary: dict[str, Any] = Field(default_factory=dict, description="The canary version served (or null), its share.")
    online: dict[str, Any] = Field(
        default_factory=dict, description="Online metrics of the served versions, from the impressions store."
    )


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


class CanaryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"version": "20261122T103000Z"}]}
    )

    version: str = Field(min_length=1, max_length=128, description="A version directory name under models/.")


class CanaryState(BaseModel):
    version: str | None = Field(description="The version CURRENT serves.")
    canary: str | None = Field(description="The canary version served, or null.")
    share: float = Field(description="Share of users the canary answers (RECSYS_CANARY_SHARE).")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["query.k: Input should be greater than or equal to 1"])


class ErrorResponse(BaseModel):
    """The one shape of every error answer, as service.errors.error_body builds it."""

    error: ErrorDetail


# --- POST /ratings ------------------------------------------------------------------------------------------


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


RATINGS_SHAPES = ("one", "batch")
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
