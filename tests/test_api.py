import pytest

from tests.conftest import post_request
from unlearn.coalesce import coalesce
from unlearn.jobs import run_job
from unlearn.store.db import session_scope

SUBJECT = {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}}


def _problem(resp, status):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_submit_returns_202_with_location_and_due_date(api):
    resp = post_request(api, SUBJECT)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert resp.headers["location"] == f"/v1/deletion-requests/{body['id']}"
    assert body["status"] == "received" and 29.9 < body["days_left"] <= 30
    assert body["targets"][0]["samples"] >= 1
    assert "subject-0001" not in resp.text  # the raw subject reference is never echoed or stored


def test_idempotency_key_replays_and_refuses_a_different_body(api):
    first = post_request(api, SUBJECT, idem="k1")
    again = post_request(api, SUBJECT, idem="k1")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = dict(SUBJECT, scope={"type": "subject", "subject": "subject-0002"})
    _problem(post_request(api, other, idem="k1"), 422)
    missing = api.post("/v1/deletion-requests", json=SUBJECT, headers={"X-API-Key": api.keys["a"]})
    assert "Idempotency-Key" in _problem(missing, 400)["detail"]


@pytest.mark.parametrize("body,status,needle", [
    ({"model": "nope", "scope": {"type": "class", "label": 1}}, 404, "unknown model"),
    ({"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": []}}, 422, "sample_ids"),
    ({"model": "digits-mlp", "scope": {"type": "samples"}}, 422, "sample_ids"),
    ({"model": "digits-mlp", "scope": {"type": "weird"}}, 422, "scope.type"),
    ({"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": ["digits-9999x"]}}, 422, "not in the training"),
    ({"model": "digits-mlp", "scope": {"type": "subject", "subject": "nobody"}}, 422, "no training data"),
    ({"scope": {"type": "class", "label": 3}}, 422, "needs a target 'model'"),
    ({"model": "digits-mlp", "scope": {"type": "class", "label": 3}, "method": "magic"}, 422, "unknown method"),
    ({"model": "digits-mlp", "scope": {"type": "class", "label": 3}, "extra": 1}, 422, "extra"),
])
def test_bad_requests_get_clear_problem_details(api, body, status, needle):
    assert needle in _problem(post_request(api, body), status)["detail"]


def test_holdout_samples_are_not_training_data(api):
    from unlearn.data import get_dataset

    holdout = get_dataset({"name": "digits", "seed": 0}).ids_in("holdout")[0]
    body = {"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": [holdout]}}
    assert holdout in _problem(post_request(api, body), 422)["detail"]


def test_oversized_body_and_scope(api):
    big = {"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": ["x" * 100] * 5000}}
    _problem(post_request(api, big), 413)
    api.settings.max_scope_items = 3
    many = {"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": ["digits-0000", "digits-0001",
                                                                              "digits-0002", "digits-0003"]}}
    _problem(post_request(api, many), 413)


def test_auth_roles_and_tenant_isolation(api):
    rid = post_request(api, SUBJECT, key="a").json()["id"]
    _problem(api.get(f"/v1/deletion-requests/{rid}"), 401)
    _problem(api.get(f"/v1/deletion-requests/{rid}", headers={"X-API-Key": "ul_wrong"}), 401)
    assert api.get(f"/v1/deletion-requests/{rid}", headers={"X-API-Key": api.keys["a"]}).status_code == 200
    _problem(api.get(f"/v1/deletion-requests/{rid}", headers={"X-API-Key": api.keys["b"]}), 404)
    listing_b = api.get("/v1/deletion-requests", headers={"X-API-Key": api.keys["b"]}).json()
    assert listing_b["total"] == 0 and listing_b["items"] == []
    assert api.get("/v1/deletion-requests", headers={"X-API-Key": api.keys["op"]}).json()["total"] == 1
    _problem(api.post(f"/v1/deletion-requests/{rid}/cancel", headers={"X-API-Key": api.keys["a"]}), 403)
    _problem(api.post("/v1/models/digits-mlp/rollback", json={"version_id": "x"},
                      headers={"X-API-Key": api.keys["a"]}), 403)
    bearer = api.get(f"/v1/deletion-requests/{rid}", headers={"Authorization": f"Bearer {api.keys['op']}"})
    assert bearer.status_code == 200


def test_cancel_only_before_running(api):
    op = {"X-API-Key": api.keys["op"]}
    rid = post_request(api, SUBJECT).json()["id"]
    resp = api.post(f"/v1/deletion-requests/{rid}/cancel", headers=op)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    _problem(api.post(f"/v1/deletion-requests/{rid}/cancel", headers=op), 409)


def test_list_filters_by_status_and_paginates(api):
    for i in range(3):
        post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": f"subject-{i + 1:04d}"}})
    h = {"X-API-Key": api.keys["a"]}
    page = api.get("/v1/deletion-requests", params={"size": 2, "page": 2}, headers=h).json()
    assert page["total"] == 3 and len(page["items"]) == 1
    assert api.get("/v1/deletion-requests", params={"status": "completed"}, headers=h).json()["total"] == 0
    _problem(api.get("/v1/deletion-requests", params={"status": "nonsense"}, headers=h), 422)


def test_end_to_end_without_celery_then_rollback_is_refused_for_tainted(api):
    """The job logic itself, driven directly (the Celery path is in test_integration)."""
    settings = api.settings
    rid = post_request(api, SUBJECT).json()["id"]
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    outcome = run_job(settings, job_id, "test-worker")
    assert outcome.status == "done", outcome.detail
    assert run_job(settings, job_id, "late-duplicate").status == "skipped"  # a redelivery does nothing
    h = {"X-API-Key": api.keys["op"]}
    req = api.get(f"/v1/deletion-requests/{rid}", headers=h).json()
    assert req["status"] == "completed" and req["seconds_to_compliance"] > 0
    assert next(iter(req["verdicts"].values()))["verdict"] == "pass"
    versions = api.get("/v1/models/digits-mlp/versions", headers=h).json()
    assert [(v["version"], v["status"], v["tainted"]) for v in versions] == [(1, "retired", True), (2, "promoted", False)]
    from pathlib import Path

    plots = versions[1]["metrics"]["plots"]
    assert Path(plots["c5"]).is_file() and Path(plots["c6"]).is_file()  # C5/C6 over the lineage, with the version
    models = api.get("/v1/models", headers=h).json()
    assert models[0]["champion"]["version"] == 2
    refused = api.post("/v1/models/digits-mlp/rollback", json={"version_id": versions[0]["id"]}, headers=h)
    assert "tainted" in _problem(refused, 409)["detail"]
    metrics = api.get("/metrics").text
    assert 'unlearn_requests{status="completed"} 1.0' in metrics
    assert "unlearn_job_duration_seconds_count" in metrics
    assert api.get("/healthz").json()["database"] is True
