"""Schemathesis against the running app: every route answers as its OpenAPI schema says, with every check on.

Every built-in check runs, in each phase the pytest plugin has (examples, coverage, fuzzing; the stateful phase
needs links, which this API has none of), on positive and negative data, with a fixed seed and a bounded number
of examples, over /openapi.json as the app serves it (bounds from its settings), admin routes with the token.

Every operation must also list the answers any request can get (408, 413, 431, 503) with the error body.

One allowance: a request the schema accepts may still name a genre or movie the served version lacks, or date
a rating a week ahead, which no static schema can state. Such an answer is a 422 with its own code, so the
/recommend, /ratings and /movies/{id}/similar routes and the catalogue's POST /movies and PATCH
/movies/{id} may answer valid data with 422, and
`valid_data_is_refused_only_by_the_domain` fails any 422 to valid data that is not one of those codes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.python import asgi

from service.app import create_app
from service.config import Settings
from tests.service.conftest import V1, add_training_curve
from tests.service.version_factory import build_version

ADMIN_TOKEN = "s3cret"
SEED = 20261122  # fixed, so that every run sends the same cases
MAX_EXAMPLES = 25  # per operation and phase: the whole file takes about fifteen seconds on 2 cores
DOMAIN_CODES = {"not_in_catalogue", "timestamp_in_future"}  # the 422s that schema-valid data may get

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["too_slow"],  # generation time on a shared 2-core box says nothing about the API
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        # Every built-in check; max_response_time needs a limit, generous for a shared 2-core box.
        "checks": {"enabled": True, "max_response_time": 10.0},
        "auth": {"openapi": {"HTTPBearer": {"bearer": ADMIN_TOKEN}}},
        "operations": [
            {
                "include-path-regex": "^/(recommend|ratings|movies/[^/]+/similar)",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
                    }
                },
            },
            {
                "include-path-regex": "^/movies(/[^/]+)?$",
                "include-method": ["POST", "PATCH"],
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
                    }
                },
            },
        ],
    }
)


def valid_data_is_refused_only_by_the_domain(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A 422 to schema-valid data must be a domain refusal, never a schema one (invalid_request)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 422:
        return
    code = response.json()["error"]["code"]
    assert code in DOMAIN_CODES, f"schema-valid data refused as {code}: {response.text}"


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    """The app's own /openapi.json, with the app's lifespan started by schemathesis and a version loaded.

    The version has the movies the schema's examples name (up to 313) and a training curve, so that the
    examples reach every route's success answer too.
    """
    root = tmp_path_factory.mktemp("schema")
    build_version(root / "models", V1, num_movies=400)
    add_training_curve(root / "models" / V1)
    settings = Settings(
        models_dir=root / "models", ratings_url=f"sqlite:///{root}/ratings.db", poll_seconds=0, admin_token=ADMIN_TOKEN
    )
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    with asgi.get_client(app) as client:  # the lifespan schemathesis started to load the schema, kept for every case
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "no version loaded"
            time.sleep(0.02)
    yield schema
    asgi.shutdown_lifespans()


@pytest.fixture
def api(live_schema: schemathesis.BaseSchema, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    # schemathesis 4.32's lazy loader reads pytest's private Node._nodeid, which pytest 9.2 no longer sets.
    request.node._nodeid = request.node.nodeid
    return live_schema


schema = schemathesis.pytest.from_fixture("api")

LIMIT_STATUSES = ("408", "413", "431", "503")  # service/limits.py's answers, and no model or too many requests
COMPONENTS = "#/components/schemas"


def test_every_operation_lists_the_answers_any_request_can_get(live_schema: schemathesis.BaseSchema) -> None:
    """The server's limits answer on every route, before or around it: each operation lists them, as errors."""
    raw = live_schema.raw_schema
    operations = {(method, path): op for path, item in raw["paths"].items() for method, op in item.items()}
    assert ("get", "/healthz") in operations and ("post", "/admin/pin") in operations
    for (method, path), operation in operations.items():
        for status in LIMIT_STATUSES:
            answer = operation["responses"].get(status)
            assert answer is not None, f"{method.upper()} {path} does not list {status}"
            assert answer["content"] == {"application/json": {"schema": {"$ref": f"{COMPONENTS}/ErrorResponse"}}}
    error = raw["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"] and error["properties"]["error"] == {"$ref": f"{COMPONENTS}/ErrorDetail"}


@schema.parametrize()
def test_every_route_matches_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(additional_checks=[valid_data_is_refused_only_by_the_domain])
