"""Hostile input: schemathesis generates requests from the OpenAPI schema; none may cause a 5xx
or a response that does not match the schema. Stateful runs follow the POST → GET link."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import register
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
COUNT = {"cases": 0}


def _app():
    import tempfile
    from pathlib import Path

    from tests.conftest import ROOT

    tmp = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    s = Settings(data_dir=tmp, rate_limit_per_minute=10**9, batch_window_s=3600)
    migrate(s.resolved_database_url)
    register(s, ROOT / ".unlearn" / "zoo")
    with session_scope(s.resolved_database_url) as session:
        key = create_api_key(session, "fuzz", "operator")
    return create_app(s), key


APP, KEY = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# Operations without parameters are exhausted after a case or two, so each of the others gets a
# generous budget; the module asserts the total at the end (at least 2,000 cases).
EXAMPLES_PER_OPERATION = 250


@pytest.fixture(scope="module", autouse=True)
def enough_cases():
    yield
    print(f"\nschemathesis: {COUNT['cases']} generated cases (stateless)")
    if COUNT["cases"]:
        assert COUNT["cases"] >= 2000, f"only {COUNT['cases']} generated cases"


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_schema_conformance(case):
    COUNT["cases"] += 1
    case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)


StatefulBase = schema.as_state_machine()


class APIWorkflow(StatefulBase):
    def get_call_kwargs(self, case):
        return {"headers": {"X-API-Key": KEY}}

    def validate_response(self, response, case, **kwargs):
        case.validate_response(response, checks=CHECKS)


TestStateful = APIWorkflow.TestCase
TestStateful.settings = settings(max_examples=60, stateful_step_count=6, deadline=None,
                                 suppress_health_check=list(HealthCheck))
