"""Request and response schemas of the admin catalogue routes: POST /movies and PATCH /movies/{movie_id}."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from service.fields import USER_ID, _integer_id_as_text, _text_or_integer, whole

FIRST_YEAR = 1870  # the earliest moving pictures; anything before is a typo
LAST_YEAR = 2100
MOVIE_ID_PATTERN = USER_ID  # training keys movies by integer, as it keys users


def _numeric_movie_id(movie_id: str) -> str:
    if not MOVIE_ID_PATTERN.fullmatch(movie_id):
        raise ValueError(
            f"movie_id {movie_id[:40]!r} is not a MovieLens-style numeric id: 1 to 18 digits without a leading "
            "zero (training keys movies by integer)"
        )
    return movie_id


def _distinct(genres: list[str]) -> list[str]:
    if len(set(genres)) != len(genres):
        raise ValueError(f"genres {genres} name a genre twice; send each once")
    return genres


NewMovieId = Annotated[
    str,
    AfterValidator(_numeric_movie_id),
    BeforeValidator(_integer_id_as_text),
    _text_or_integer({"type": "string", "pattern": f"^(?:{MOVIE_ID_PATTERN.pattern})$"}),
]
Title = Annotated[str, Field(min_length=1, max_length=300)]
Genres = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(
        max_length=30,
        description="Distinct genres the served version knows.",
        json_schema_extra={"uniqueItems": True},
    ),
    AfterValidator(_distinct),
]
Year = Annotated[int, Field(ge=FIRST_YEAR, le=LAST_YEAR), BeforeValidator(whole)]  # the release year


class NewMovie(BaseModel):
    """A movie to add to the catalogue: rateable, searchable and recommendable at once."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"movie_id": "5001", "title": "Arrival (2016)", "genres": ["Drama", "Sci-Fi"], "year": 2016}]
        },
    )

    movie_id: NewMovieId = Field(description="A numeric id no movie in the catalogue has.")
    title: Title
    genres: Genres
    year: Year | None = None


class NewMovies(BaseModel):
    """Several movies added together, in one transaction."""

    model_config = ConfigDict(extra="forbid", strict=True)

    movies: list[NewMovie] = Field(
        min_length=1,
        description="At most RECSYS_MAX_MOVIES_PER_REQUEST (1000).",
        json_schema_extra={"x-maxItems-setting": "max_movies_per_request"},
    )


def _movies_shape(body: Any) -> str:
    return "batch" if isinstance(body, dict) and "movies" in body else "one"


MOVIES_SHAPES = ("one", "batch")
OneOrMoreMovies = Annotated[
    Annotated[NewMovie, Tag("one")] | Annotated[NewMovies, Tag("batch")], Discriminator(_movies_shape)
]


class MoviesRequest(RootModel[OneOrMoreMovies]):
    """One movie object, or a batch of them as {"movies": [...]}."""

    def movies(self) -> list[NewMovie]:
        return self.root.movies if isinstance(self.root, NewMovies) else [self.root]


class MoviePatch(BaseModel):
    """What to change about one movie; a field left out stays as it is."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "minProperties": 1,
            "examples": [{"available": False}, {"title": "Arrival (2016)", "genres": ["Sci-Fi"]}],
        },
    )

    # Each field may be left out, never null: a change names what it changes.
    title: Title | SkipJsonSchema[None] = None
    genres: Genres | SkipJsonSchema[None] = None
    year: Year | SkipJsonSchema[None] = None
    available: bool | SkipJsonSchema[None] = Field(
        default=None, description="false withdraws the movie from every answer; true brings it back."
    )

    @model_validator(mode="before")
    @classmethod
    def _named_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if not data:
                raise ValueError("send at least one of title, genres, year, available")
            nulls = sorted(name for name, value in data.items() if value is None)
            if nulls:
                raise ValueError(f"{nulls} are null; leave a field out to keep it as it is")
        return data


class CatalogueMovie(BaseModel):
    """A movie as the catalogue now serves it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "movie_id": "5001",
                    "title": "Arrival (2016)",
                    "genres": ["Drama", "Sci-Fi"],
                    "year": 2016,
                    "available": True,
                    "change_id": 12,
                }
            ]
        }
    )

    movie_id: str
    title: str
    genres: list[str]
    year: int | None = Field(description="null when unknown (MovieLens movies carry it in the title).")
    available: bool
    change_id: int = Field(description="The catalogue store's id of the newest change of this movie.")


class MoviesAdded(BaseModel):
    added: int = Field(description="How many movies were committed.")
    movies: list[CatalogueMovie]
