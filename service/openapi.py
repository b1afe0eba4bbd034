"""The OpenAPI schema as the app serves it: hand-read inputs, the settings' bounds, the answers of every route.

Routes that read their own input declare it from the same pydantic models (query_parameters, request_body);
the bounds the settings set and the answers any request can get (LIMIT_ANSWERS) are filled in once, here, for
every route when the schema is first served.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from service.config import Settings
from service.schemas import ErrorResponse

# A setting bounds some values (k, batch sizes); the schema marks them so that each app's OpenAPI states its own.
SETTING_BOUNDS = {"x-maximum-setting": "maximum", "x-maxItems-setting": "maxItems"}

_ERROR = {"model": ErrorResponse}
# The errors routes declare themselves (the answers every route can give are added by with_limit_answers).
ERRORS: dict[int | str, dict[str, Any]] = {404: _ERROR, 422: _ERROR}
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "No or a wrong admin token", "headers": _CHALLENGE},
    403: {**_ERROR, "description": "A token, but admin endpoints are disabled (no RECSYS_ADMIN_TOKEN)"},
    **ERRORS,
}

# What any request can be answered, whatever its route: the server's limits (service/limits.py) and a server
# that cannot serve yet or now. Each is an error body like every other error.
LIMIT_ANSWERS = {
    "408": "The request's headers (RECSYS_HEADER_TIMEOUT_SECONDS) or body (RECSYS_BODY_TIMEOUT_SECONDS) came too "
    "slowly; the connection is closed",
    "413": "The request body is over RECSYS_MAX_BODY_BYTES",
    "431": "The URL and headers are over RECSYS_MAX_HEADER_BYTES; the connection is closed",
    "503": "No version loaded yet (no_model), the ratings store failed a write (ratings_unavailable), or over "
    "RECSYS_MAX_CONNECTIONS connections or requests at once (service_unavailable): retry",
}
_REF_TEMPLATE = "#/components/schemas/{model}"


def install(app: FastAPI, settings: Settings) -> None:
    """Serve `app`'s schema with `settings`' bounds and the limit answers in it, generated once on first use."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_limit_answers(with_settings(generate(), settings.model_dump()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_limit_answers(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every operation answering LIMIT_ANSWERS, each with the error body's schema."""
    content = {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=ErrorResponse.__name__)}}}
    limits = {status: {"description": text, "content": content} for status, text in LIMIT_ANSWERS.items()}
    paths = {
        path: {
            method: {**operation, "responses": {**operation.get("responses", {}), **limits}}
            for method, operation in item.items()
        }
        for path, item in schema.get("paths", {}).items()
    }
    components = schema.get("components", {})
    return {**schema, "paths": paths, "components": {**components, "schemas": _with_model(components, ErrorResponse)}}


def _with_model(components: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """components' schemas with `model`'s and those it refers to (kept as FastAPI wrote them where it did)."""
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    defs = {**schema.pop("$defs", {}), model.__name__: schema}
    return {**defs, **components.get("schemas", {})}


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
