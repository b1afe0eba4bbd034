"""The JSON answers handlers return: orjson bytes, and the one error answer."""

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from service.errors import error_body


class JSONBytes(Response):
    """orjson-encoded JSON, returned straight from handlers so FastAPI skips re-validating the response."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error answer: `status` with the one error body (service.errors.error_body)."""
    return JSONBytes(error_body(code, message), status_code=status, headers=headers)
