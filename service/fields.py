"""Field types the request bodies share: a timestamp as Unix seconds or RFC 3339, an id as text or integer."""

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints, ValidationInfo, WithJsonSchema

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


def _date_time_seconds(text: str) -> int:
    """Unix seconds (floored) of an RFC 3339 date-time from 1970 to 9999, as its schema states."""
    if _DATE_TIME.fullmatch(text):
        with contextlib.suppress(ValueError):  # e.g. February 30th
            return (datetime.fromisoformat(text.upper()) - _EPOCH) // _ONE_SECOND
    raise ValueError(
        f"timestamp {text[:40]!r} is neither Unix seconds nor an ISO-8601 (RFC 3339) date-time from 1970 to 9999 "
        "with Z or an offset (e.g. 1997-11-09T10:45:27Z)"
    )


def whole(value: Any) -> Any:
    """A JSON number without a fraction is an integer, as JSON Schema says: 10.0 is 10 (and true is no number)."""
    return int(value) if type(value) is float and value.is_integer() else value


def _to_unix_seconds(value: Any, info: ValidationInfo) -> Any:
    """Unix seconds (a JSON integer, or digits in a query string) or an RFC 3339 date-time string."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be Unix seconds or an ISO-8601 date-time, not a boolean")
    value = whole(value)
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
    value = whole(value)
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


# POST /ratings takes only ids training could have keyed by integer.
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
