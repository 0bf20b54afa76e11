"""Who may do what: every route × role, tenant isolation, rate limits, hashed secrets, clean logs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlmodel import select

from tests.conftest import ROOT, post_request
from unlearn.coalesce import coalesce
from unlearn.jobs import run_job
from unlearn.store.db import session_scope
from unlearn.store.models import ApiKey, DeletionRequest, TrainingRecord

OPEN, ANY, OPERATOR = "open", "any key", "operator"
# Every route of the API, with who may call it. A new route without a line here fails the test.
ACCESS = {
    ("POST", "/v1/deletion-requests"): ANY,
    ("POST", "/v1/deletion-requests/bulk"): ANY,
    ("GET", "/v1/deletion-requests"): ANY,
    ("GET", "/v1/deletion-requests/{request_id}"): ANY,
    ("POST", "/v1/deletion-requests/{request_id}/cancel"): OPERATOR,
    ("GET", "/v1/models"): ANY,
    ("GET", "/v1/models/{name}/versions"): ANY,
    ("POST", "/v1/models/{name}/rollback"): OPERATOR,
    ("POST", "/v1/models"): OPERATOR,
    ("GET", "/v1/models/{name}"): ANY,
    ("POST", "/v1/models/{name}/records"): OPERATOR,
    ("GET", "/v1/models/{name}/records"): OPERATOR,
    ("GET", "/healthz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/v1/keys"): OPEN,
    ("GET", "/v1/deletion-requests/{request_id}/certificate"): ANY,
    ("GET", "/v1/deletion-requests/{request_id}/audit"): ANY,
    ("POST", "/v1/deletion-requests/{request_id}/approve"): OPERATOR,
    ("POST", "/v1/deletion-requests/{request_id}/deny"): OPERATOR,
    ("POST", "/v1/deletion-requests/{request_id}/extend"): OPERATOR,
    ("POST", "/v1/deletion-requests/{request_id}/decision"): OPERATOR,
    ("GET", "/v1/jobs"): OPERATOR,
    ("POST", "/v1/jobs/{job_id}/retry"): OPERATOR,
    ("GET", "/v1/workers"): OPERATOR,
    ("GET", "/v1/overview"): OPERATOR,
    ("GET", "/v1/compliance"): OPERATOR,
    ("POST", "/v1/models/{name}/compliance-check"): OPERATOR,
    ("GET", "/v1/models/{name}/versions/{version_id}/report"): ANY,
    ("GET", "/v1/models/{name}/versions/{version_id}/report/plots/{plot}"): ANY,
    ("GET", "/dashboard"): OPEN,
    ("GET", "/dashboard/static/{asset}"): OPEN,
    ("POST", "/dashboard/login"): OPERATOR,  # the key travels in the body; only operators get a session
    ("POST", "/dashboard/logout"): OPEN,
    ("GET", "/dashboard/session"): ANY,
    ("GET", "/docs"): OPEN,  # the API reference (Swagger UI), its files from the package
    ("GET", "/docs/static/{asset}"): OPEN,
}
# Routes that show one tenant's data: another tenant's submitter must get 404.
# (The certificate, 404 for everyone until completion, is checked in test_operator_api.)
TENANT_SCOPED = {("GET", "/v1/deletion-requests/{request_id}"), ("GET", "/v1/deletion-requests/{request_id}/audit")}


def _routes(app):
    for r in iter_route_contexts(app.routes):  # through included routers, which FastAPI keeps whole
        if isinstance(r.original_route, APIRoute):
            for m in r.methods:
                yield m, r.path


def _call(api, method, path, key, rid):
    asset = "swagger-ui.css" if path.startswith("/docs") else "dashboard.js"
    url = path.replace("{request_id}", rid).replace("{name}", "digits-mlp").replace("{asset}", asset)
    for param in ("{job_id}", "{version_id}", "{plot}"):
        url = url.replace(param, "nope")
    headers = {"X-API-Key": api.keys[key]} if key else {}
    headers["Idempotency-Key"] = "sec-" + (key or "none") + method + path
    body = {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}}
    if path.endswith("rollback"):
        body = {"version_id": "nope"}
    if path == "/dashboard/login":
        headers, body = {}, {"api_key": api.keys[key] if key else "ul_none"}
    return api.request(method, url, headers=headers, json=body if method == "POST" else None)


def test_every_route_is_in_the_access_table(api):
    assert set(_routes(api.app)) == set(ACCESS)


def test_route_by_role(api):
    rid = post_request(api, {"model": "digits-mlp", "scope": {"type": "class", "label": 2}}).json()["id"]
    for (method, path), who in ACCESS.items():
        anonymous = _call(api, method, path, None, rid).status_code
        submitter = _call(api, method, path, "a", rid).status_code
        operator = _call(api, method, path, "op", rid).status_code
        where = f"{method} {path}"
        if who == OPEN:
            assert anonymous < 400, where
            continue
        assert anonymous == 401, where
        assert operator not in (401, 403), where
        assert (submitter == 403) == (who == OPERATOR), f"{where}: submitter got {submitter}"


def test_tenant_isolation_on_every_tenant_scoped_route(api):
    rid = post_request(api, {"model": "digits-mlp", "scope": {"type": "class", "label": 2}}, key="a").json()["id"]
    for method, path in TENANT_SCOPED:
        assert _call(api, method, path, "b", rid).status_code == 404
        assert _call(api, method, path, "a", rid).status_code == 200
    listing = api.get("/v1/deletion-requests", headers={"X-API-Key": api.keys["b"]}).json()
    assert listing["total"] == 0 and rid not in str(listing)


def test_rate_limit_answers_429_with_retry_after(api):
    from fastapi.testclient import TestClient

    from api.app import create_app

    strict = TestClient(create_app(api.settings.model_copy(update={"rate_limit_per_minute": 5})))
    h = {"X-API-Key": api.keys["a"]}
    codes = [strict.get("/v1/models", headers=h).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5] == 429
    resp = strict.get("/v1/models", headers=h)
    assert int(resp.headers["retry-after"]) >= 1 and resp.headers["content-type"].startswith("application/problem")
    assert strict.get("/v1/models", headers={"X-API-Key": api.keys["b"]}).status_code == 200  # per key


def test_secrets_and_subjects_are_stored_hashed_and_never_logged(api, caplog):
    caplog.set_level(logging.DEBUG)
    subject = "subject-0007"
    rid = post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": subject}}).json()["id"]
    with session_scope(api.settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, api.settings, force=True)
    assert run_job(api.settings, job_id, "w").status == "done"
    with session_scope(api.settings.resolved_database_url) as s:
        request = s.get(DeletionRequest, rid)
        assert request.subject_hash and subject not in str(request.model_dump())
        assert not s.exec(select(TrainingRecord).where(TrainingRecord.subject_hash == subject)).first()
        stored_keys = [k.key_hash for k in s.exec(select(ApiKey)).all()]
        assert all(len(h) == 64 for h in stored_keys) and not set(api.keys.values()) & set(stored_keys)
    db_bytes = Path(api.settings.resolved_database_url.split("///")[1]).read_bytes()
    assert subject.encode() not in db_bytes
    assert caplog.text and subject not in caplog.text


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "unlearn").rglob("*.py")) +
                         sorted(p for d in ("api", "workers", "cli") for p in (ROOT / d).rglob("*.py")))
def test_weights_are_never_unpickled(path):
    text = path.read_text()
    assert not re.search(r"^\s*import pickle|pickle\.loads?\(|joblib", text, re.M), path
    for call in re.findall(r"torch\.load\([^)]*\)", text):
        assert "weights_only=True" in call, f"{path}: {call}"
