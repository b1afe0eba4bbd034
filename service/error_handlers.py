"""The app's exception handlers: every error raised while answering becomes its status and the one error body."""

import logging
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute

from service.errors import ServiceError, http_code, status_of
from service.responses import error_response

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request the client abandoned; counted, never sent

# (status, code, message, headers) of one error answer.
Answer = tuple[int, str, str, dict[str, str] | None]
INTERNAL_ERROR: Answer = (500, "internal_error", "internal error; the server log has the details", None)


def known_error(exc: Exception) -> Answer | None:
    """The answer to a domain or validation error; None for anything else (a 500)."""
    if isinstance(exc, ServiceError):
        status, code = status_of(exc)
        return status, code, exc.message, {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RequestValidationError):
        return 422, "invalid_request", _describe(exc), None
    return None


def add_error_handlers(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """Answer domain, validation and HTTP errors in the one error shape, and anything unexpected as a 500.

    `routes`: the API's, whose methods at a path a 405 lists.
    """

    async def domain_or_validation_error(request: Request, exc: Exception) -> Response:
        known = known_error(exc)
        assert known is not None
        return error_response(*known)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = _allow(routes, request, exc) if exc.status_code == 405 else exc.headers
        return error_response(exc.status_code, http_code(exc.status_code), str(exc.detail), headers)

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client hung up before its body arrived: nobody reads this answer, and it is no server error.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(CLIENT_CLOSED_REQUEST, "client_closed_request", "the client closed the connection")

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(*INTERNAL_ERROR)

    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(ServiceError, domain_or_validation_error)
    app.add_exception_handler(RequestValidationError, domain_or_validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def _describe(exc: RequestValidationError) -> str:
    """'query.k: Input should be greater than or equal to 1; body.user_id: Field required'."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        reason = str(error.get("ctx", {}).get("error", ""))
        if error.get("type") == "json_invalid" and reason not in message:
            message = f"{message} ({reason})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def _allow(routes: Sequence[BaseRoute], request: Request, exc: StarletteHTTPException) -> Mapping[str, str] | None:
    """A 405's Allow header with every method the API takes at this path, not only the first route's."""
    path = request.scope["path"]
    at_path = [route for route in routes if isinstance(route, APIRoute) and route.path_regex.match(path)]
    methods = {method for route in at_path for method in route.methods or ()}
    return {"Allow": ", ".join(sorted(methods))} if methods else exc.headers
