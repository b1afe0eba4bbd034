"""The closed set of errors the service raises, the HTTP status and code of each, and the one error body."""

from http import HTTPStatus

import orjson


class ServiceError(Exception):
    """Base of every error a client can be told about; the message says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ServiceError):
    """The request breaks a rule its OpenAPI schema states (k above RECSYS_MAX_K, too many requests in a batch)."""


class NotInCatalogueError(ServiceError):
    """The request is valid but names genres or movies the served version's catalogue lacks."""


class FutureTimestampError(ServiceError):
    """A rating is dated more than a day ahead of the server's clock: a client clock or unit bug."""


class UnknownUserError(ServiceError):
    """The user has no training history and the service is configured to say so (404)."""


class UnknownMovieError(ServiceError):
    """The movie_id is not in the served version's catalogue."""


class NoModelError(ServiceError):
    """No version has been loaded yet, so nothing can be recommended."""


class VersionNotFoundError(ServiceError):
    """A named version has no directory under the models dir."""


class VersionRejectedError(ServiceError):
    """A version failed verification or loading; the previously served version stays."""


class AdminDisabledError(ServiceError):
    """A token was sent but admin endpoints are off because none is configured (403: no token would help)."""


class AdminAuthError(ServiceError):
    """The admin bearer token is missing or wrong (401, so that the client is asked for one)."""


class RatingsUnavailableError(ServiceError):
    """The ratings database failed a write; nothing was acknowledged, so the client should retry."""


class DuplicateMovieError(ServiceError):
    """POST /movies names a movie_id the catalogue already has (409: adding it again cannot succeed)."""


class CatalogueUnavailableError(ServiceError):
    """The catalogue database failed a write; nothing was acknowledged, so the client should retry."""


class ModelsDirUnwritableError(ServiceError):
    """A pointer file under the models dir could not be written (a read-only mount); nothing was changed there."""


class MissingFileError(ServiceError):
    """The served version has no such file (an optional one, such as the training curve)."""


# The one mapping from domain errors to HTTP: status and a stable machine-readable code.
ERROR_STATUS: dict[type[ServiceError], tuple[int, str]] = {
    InvalidRequestError: (422, "invalid_request"),  # the request breaks its OpenAPI schema
    NotInCatalogueError: (422, "not_in_catalogue"),  # valid, but the served version lacks a genre or movie
    FutureTimestampError: (422, "timestamp_in_future"),
    UnknownUserError: (404, "unknown_user"),
    UnknownMovieError: (404, "unknown_movie"),
    MissingFileError: (404, "file_not_found"),
    VersionNotFoundError: (404, "version_not_found"),
    VersionRejectedError: (422, "version_rejected"),
    NoModelError: (503, "no_model"),
    RatingsUnavailableError: (503, "ratings_unavailable"),
    DuplicateMovieError: (409, "duplicate_movie"),
    CatalogueUnavailableError: (503, "catalogue_unavailable"),
    ModelsDirUnwritableError: (503, "models_dir_unwritable"),
    AdminAuthError: (401, "unauthorized"),
    AdminDisabledError: (403, "admin_disabled"),
}


def status_of(error: ServiceError) -> tuple[int, str]:
    """(status, code) of a domain error, by its nearest class in ERROR_STATUS."""
    return next(ERROR_STATUS[kind] for kind in type(error).__mro__ if kind in ERROR_STATUS)


def http_code(status: int) -> str:
    """The code of an error that is an HTTP status alone (no route, a body too big): 413 -> request_entity_too_large."""
    return HTTPStatus(status).phrase.lower().replace(" ", "_")


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The one shape of every error answer (schemas.ErrorResponse): {"error": {"code": ..., "message": ...}}."""
    return {"error": {"code": code, "message": message}}


def error_json(code: str, message: str) -> bytes:
    """error_body as the JSON bytes every answer is written in (orjson, as responses.JSONBytes renders it)."""
    return orjson.dumps(error_body(code, message))
