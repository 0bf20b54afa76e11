"""Hostile input: schemathesis generates requests from the OpenAPI schema; none may cause a 5xx
or a response that does not match the schema. Stateful runs follow the POST → GET link.

Schemathesis writes only what a schema allows and what UTF-8 can encode, so hooks below also spoil about
half of the generated bodies, queries and path parameters: one string gets NUL or a lone surrogate, or one
number becomes NaN or ±Infinity. The API must refuse each such request (`refuses_unstorable`)."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import select

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import register
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import TrainingRecord

COUNT = {"cases": 0}
BAD_TEXT = ("\x00", "\ud800", "\udfff")  # NUL, a lone high and a lone low surrogate
URL_TEXT = ("\x00",)  # a URL cannot carry a lone surrogate (no UTF-8 to percent-encode)
BAD_NUMBERS = (math.nan, math.inf, -math.inf)


def _leaves(value: Any, path: tuple = ()):
    """(path, kind) of every string, number and nested object key inside a JSON value. A top-level key names
    a field or parameter: one not in the schema is dropped, not stored, so spoiling it proves nothing."""
    if isinstance(value, dict):
        for key, item in value.items():
            if path:
                yield (*path, key), "key"
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    elif isinstance(value, str):
        yield path, "text"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, "number"


def _replace(value: Any, path: tuple, kind: str, bad: Any) -> Any:
    """A copy of `value` whose leaf at `path` holds `bad`: inside a string or key, or instead of a number."""
    if not path:
        return value[:1] + bad + value[1:] if kind == "text" else bad
    head, rest = path[0], path[1:]
    out = list(value) if isinstance(value, list) else dict(value)
    if kind == "key" and not rest:
        out[head[:1] + bad + head[1:]] = out.pop(head)
    else:
        out[head] = _replace(value[head], rest, kind, bad)
    return out


def _spoil(value: Any, text: tuple[str, ...], numbers: tuple[float, ...] = BAD_NUMBERS) -> st.SearchStrategy:
    """`value` as generated, or with one leaf spoiled."""
    leaves = [(path, kind) for path, kind in _leaves(value) if kind != "number" or numbers]
    if not leaves:
        return st.just(value)

    def spoiled(leaf):
        path, kind = leaf
        return st.sampled_from(numbers if kind == "number" else text).map(
            lambda bad: _replace(value, path, kind, bad))

    return st.one_of(st.just(value), st.sampled_from(leaves).flatmap(spoiled))


def _unstorable(value: Any) -> bool:
    """NaN or ±Infinity, NUL or a lone surrogate anywhere inside `value`."""
    try:  # json refuses a non-finite number, UTF-8 a lone surrogate (UnicodeEncodeError is a ValueError)
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode()
    except ValueError:
        return True
    return "\\u0000" in text  # how json writes NUL


def _read_query(case, response=None) -> dict[str, Any]:
    """The query as the app reads it: schemathesis also sends undeclared parameters (ignored) and repeats
    scalar ones (the last value counts). Read from the URL that was sent where the response carries it, so
    that the check judges the very values the app received."""
    sent = None
    url = getattr(getattr(response, "request", None), "url", None)
    if isinstance(url, str):
        from urllib.parse import parse_qsl, urlsplit

        sent = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    read = {}
    for param in case.operation.query:
        is_array = '"array"' in json.dumps(param.definition.get("schema", {}))
        if sent is not None:
            values = [v for k, v in sent if k == param.name]
            read[param.name] = values if is_array else (values[-1] if values else None)
            continue
        value = (case.query or {}).get(param.name)
        read[param.name] = value[-1] if isinstance(value, list) and value and not is_array else value
    return read


@schemathesis.check
def refuses_unstorable(ctx, response, case) -> None:
    # In a URL every value is text ("nan" is a fine string), so there only NUL counts; a value nested deeper
    # than a repeated parameter's items goes out as its Python repr, NUL written as the four characters \x00.
    url = [*_read_query(case, response).values(), *(case.path_parameters or {}).values()]
    items = [item for value in url for item in (value if isinstance(value, list) else [value])]
    bad_url = any(isinstance(item, str) and "\x00" in item for item in items)
    if response.status_code < 400 and (bad_url or (case.body is not NOT_SET and _unstorable(case.body))):
        raise AssertionError(f"{response.status_code} for a request holding NUL, a lone surrogate or a "
                             "non-finite number; expected 422")


# requests' own JSON encoder refuses NaN and Infinity; the app's parser reads them (as JavaScript writes them)
@schemathesis.serializer("application/json")
def _json_with_non_finite_numbers(ctx, value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


# A batch of training records is a raw body (NDJSON text or Parquet bytes): sent as generated, a lone
# surrogate kept as the invalid UTF-8 a broken client would send.
@schemathesis.serializer("application/x-ndjson", "application/vnd.apache.parquet")
def _raw_records(ctx, value) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8", "surrogatepass")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, refuses_unstorable]


def _app():
    import tempfile
    from pathlib import Path

    from tests.conftest import ROOT

    tmp = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    s = Settings(data_dir=tmp, rate_limit_per_minute=10**9, batch_window_s=3600)
    migrate(s.resolved_database_url)
    register(s, ROOT / ".unlearn" / "zoo", MODEL)
    with session_scope(s.resolved_database_url) as session:
        key = create_api_key(session, "fuzz", "operator")
        samples = session.exec(select(TrainingRecord.sample_id).where(
            TrainingRecord.model_name == MODEL, TrainingRecord.split == "train").limit(5)).all()
    return create_app(s), key, list(samples)


def _grounded(body: Any) -> st.SearchStrategy:
    """A deletion request as generated, or with a valid scope on the registered model's real training samples:
    the schema's flat scope rarely comes out valid, and a random model stops at 404 (a random method at 422)
    before a spoiled value reaches the database. Its other fields stay as generated."""
    if not isinstance(body, dict) or "scope" not in body:
        return st.just(body)
    grounded = {k: v for k, v in body.items() if k != "method"} | {
        "model": MODEL, "scope": {"type": "samples", "sample_ids": SAMPLE_IDS}}
    return st.sampled_from([body, grounded])


def _headers(case) -> dict[str, str]:
    """The caller's key, and an Idempotency-Key where a grounded request lacks one, so that it reaches intake."""
    headers = {"X-API-Key": KEY}
    if isinstance(case.body, dict) and case.body.get("model") == MODEL and "Idempotency-Key" not in (case.headers or {}):
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


MODEL = "digits-mlp"
APP, KEY, SAMPLE_IDS = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.hooks.hook("flatmap_body")(lambda context, body: _grounded(body).flatmap(lambda b: _spoil(b, BAD_TEXT)))
schema.hooks.hook("flatmap_query")(lambda context, query: _spoil(query, URL_TEXT, ()))
schema.hooks.hook("flatmap_path_parameters")(lambda context, path: _spoil(path, URL_TEXT, ()))
# Operations without parameters are exhausted after a case or two, so each of the others gets a
# generous budget; the module asserts the total at the end (at least 2,000 cases).
EXAMPLES_PER_OPERATION = 250


@pytest.fixture(scope="module", autouse=True)
def enough_cases():
    yield
    print(f"\nschemathesis: {COUNT['cases']} generated cases (stateless)")
    # Unconditional: zero cases is the failure to catch (under xdist the schema's cases are not collected).
    assert COUNT["cases"] >= 2000, f"only {COUNT['cases']} generated cases"


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_schema_conformance(case):
    COUNT["cases"] += 1
    case.call_and_validate(headers=_headers(case), checks=CHECKS)


StatefulBase = schema.as_state_machine()


class APIWorkflow(StatefulBase):
    def get_call_kwargs(self, case):
        return {"headers": _headers(case)}

    def validate_response(self, response, case, **kwargs):
        case.validate_response(response, checks=CHECKS)


TestStateful = APIWorkflow.TestCase
TestStateful.settings = settings(max_examples=60, stateful_step_count=6, deadline=None,
                                 suppress_health_check=list(HealthCheck))
