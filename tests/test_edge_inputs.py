"""Text and numbers a storage layer cannot hold: NUL (PostgreSQL text refuses it), lone surrogates (no UTF-8
encoding exists) and non-finite numbers (JSON has none). Every body, query and path value that holds one
is refused with 422 problem+json naming the field, the same on SQLite and PostgreSQL, and nothing is stored.

Bodies are sent as raw JSON text (`content=`): httpx's `json=` refuses to write NaN and Infinity."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import register
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, IdempotencyRecord

REQUESTS = "/v1/deletion-requests"
SAMPLE = "digits-0117"  # a training sample of digits-mlp: only the bad character makes a request invalid
NUL, SURROGATE, NAN, INF = "\x00", "\ud800", float("nan"), float("inf")
WHY = {NUL: "NUL", SURROGATE: "surrogate", "\udfff": "surrogate", NAN: "finite", INF: "finite", -INF: "finite"}


def _body(**fields):
    """A deletion request on digits-mlp for SAMPLE, with `fields` replacing or adding to it."""
    return {"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": [SAMPLE]}} | fields


@pytest.fixture()
def client(empty_database, tmp_path, zoo_dir):
    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database, batch_window_s=3600.0)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        keys = {"a": create_api_key(s, "tenant-a", "submitter"), "op": create_api_key(s, "ops", "operator")}
    c = TestClient(create_app(settings), raise_server_exceptions=False)
    c.keys, c.url = keys, settings.resolved_database_url
    return c


def _stored(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {table.__name__: s.exec(select(func.count()).select_from(table)).one()
                for table in (DeletionRequest, IdempotencyRecord, AuditEvent)}


def _post(client, path: str, body, key: str = "op"):
    """`body` as the JSON text a client sends: json.dumps escapes NUL and lone surrogates ("\\u0000",
    "\\ud800") and writes NaN and Infinity as bare literals, which Starlette's parser reads back."""
    return client.post(path, content=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", "X-API-Key": client.keys[key], "Idempotency-Key": uuid.uuid4().hex})


def _refused(response, field: str, bad) -> None:
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert field in detail and WHY[bad] in detail, detail


def test_a_valid_request_of_the_same_shape_is_accepted(client):
    """The refusals below are about the one character or number: without it each body is accepted."""
    before = _stored(client.url)["DeletionRequest"]
    assert _post(client, REQUESTS, _body(), "a").status_code == 202
    assert _post(client, REQUESTS, _body(method="ssd", params={"alpha": 5.0})).status_code == 202
    assert _stored(client.url)["DeletionRequest"] == before + 2


BODIES = {  # name: (body, key, field named in the detail, the bad value)
    "sample id with a lone surrogate": (_body(scope={"type": "samples", "sample_ids": [SAMPLE + SURROGATE]}),
                                        "a", "scope.sample_ids.0", SURROGATE),
    "sample id with NUL": (_body(scope={"type": "samples", "sample_ids": [SAMPLE, SAMPLE + NUL]}), "a",
                           "scope.sample_ids.1", NUL),
    "external id with NUL": (_body(external_id="ext-\x00-x"), "a", "external_id", NUL),
    "external id with a lone surrogate": (_body(external_id="ext-\udfff"), "a", "external_id", "\udfff"),
    "subject with NUL": ({"scope": {"type": "subject", "subject": "subject-0007" + NUL}}, "a", "scope.subject",
                         NUL),
    "concept with a lone surrogate": (_body(scope={"type": "concept", "concept": "digit-3" + SURROGATE}), "a",
                                      "scope.concept", SURROGATE),
    "model with NUL": (_body(model="digits-mlp" + NUL), "a", "model", NUL),
    "method with NUL": (_body(method="ssd" + NUL), "a", "method", NUL),
    "params NaN": (_body(method="ssd", params={"alpha": NAN}), "op", "params", NAN),
    "params Infinity": (_body(method="ssd", params={"alpha": INF}), "op", "params", INF),
    "params -Infinity nested": (_body(params={"x": {"y": [1, -INF]}}), "op", "x.y.1", -INF),
    "params nested string with NUL": (_body(params={"x": ["ok", {"z": "a" + NUL}]}), "op", "x.1.z", NUL),
    "params key with a lone surrogate": (_body(params={"l" + SURROGATE: 0.1}), "op", "params", SURROGATE),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_a_body_with_text_or_a_number_no_layer_can_hold_is_refused_and_nothing_is_stored(client, case):
    body, key, field, bad = BODIES[case]
    before = _stored(client.url)
    _refused(_post(client, REQUESTS, body, key), field, bad)
    assert _stored(client.url) == before
    listed = client.get("/v1/deletion-requests", headers={"X-API-Key": client.keys["op"]})
    assert listed.status_code == 200 and listed.json()["total"] == 0


OTHER_BODIES = {  # every other body the API reads, each with one bad string
    "rollback version": ("/v1/models/digits-mlp/rollback", {"version_id": "v" + NUL}, "version_id", NUL),
    "rollback reason": ("/v1/models/digits-mlp/rollback", {"version_id": "v", "reason": "r" + SURROGATE},
                        "reason", SURROGATE),
    "approve reason": ("/v1/deletion-requests/r/approve", {"reason": "ok" + NUL}, "reason", NUL),
    "deny reason": ("/v1/deletion-requests/r/deny", {"reason": "no\udfff"}, "reason", "\udfff"),
    "extend reason": ("/v1/deletion-requests/r/extend", {"days": 3, "reason": NUL}, "reason", NUL),
    "dashboard login": ("/dashboard/login", {"api_key": "k" + NUL}, "api_key", NUL),
}


@pytest.mark.parametrize("case", list(OTHER_BODIES))
def test_every_other_body_refuses_the_same_text(client, case):
    path, body, field, bad = OTHER_BODIES[case]
    before = _stored(client.url)
    _refused(_post(client, path, body), field, bad)
    assert _stored(client.url) == before


@pytest.mark.parametrize("path, field", [
    ("/v1/deletion-requests?q=ext-%00-x", "q"),
    ("/v1/deletion-requests?model=digits%00", "model"),
    ("/v1/deletion-requests?status=received%00", "status"),
    ("/v1/jobs?model=digits%00", "model"),
    ("/v1/deletion-requests/abc%00def", "request_id"),
    ("/v1/deletion-requests/abc%00def/audit", "request_id"),
    ("/v1/deletion-requests/abc%00def/certificate", "request_id"),
    ("/v1/models/digits%00/versions", "name"),
    ("/v1/models/digits-mlp/versions/v%00/report", "version_id"),
])
def test_a_query_or_path_parameter_with_nul_is_refused(client, path, field):
    _refused(client.get(path, headers={"X-API-Key": client.keys["op"]}), field, NUL)
