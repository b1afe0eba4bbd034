"""The closed set of errors the service raises; app.py maps each to one HTTP status, once."""


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


class MissingFileError(ServiceError):
    """The served version has no such file (an optional one, such as the training curve)."""
