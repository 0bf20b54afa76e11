"""Certificates, audit trails, operator actions, read-outs and the dashboard's login, over HTTP."""

from __future__ import annotations

import sys
import types
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.conftest import post_request
from tests.test_api import SUBJECT, _problem
from unlearn.certificates import verify_certificate
from unlearn.coalesce import coalesce
from unlearn.jobs import run_job
from unlearn.store.db import session_scope
from unlearn.store.models import (
    AuditEvent,
    ComplianceCheck,
    DeletionRequest,
    ModelVersion,
    UnlearningJob,
    utcnow,
)

CLASS_3 = {"model": "digits-mlp", "scope": {"type": "class", "label": 3}}


def _h(api, who="op"):
    return {"X-API-Key": api.keys[who]}


def _job(settings) -> str:
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    return job_id


def test_certificate_after_completion_only_and_only_for_its_tenant(api):
    rid = post_request(api, SUBJECT).json()["id"]
    early = _problem(api.get(f"/v1/deletion-requests/{rid}/certificate", headers=_h(api, "a")), 404)
    assert "issued when a request completes" in early["detail"]
    assert run_job(api.settings, _job(api.settings), "w").status == "done"
    resp = api.get(f"/v1/deletion-requests/{rid}/certificate", headers=_h(api, "a"))
    assert resp.status_code == 200, resp.text
    keys = api.get("/v1/keys").json()  # published without a key
    assert keys["algorithm"] == "Ed25519" and resp.json()["key_id"] == keys["key_id"]
    assert verify_certificate(resp.json(), keys["public_key_pem"])
    assert api.get(f"/v1/deletion-requests/{rid}", headers=_h(api, "a")).json()["links"]["certificate"]
    _problem(api.get(f"/v1/deletion-requests/{rid}/certificate", headers=_h(api, "b")), 404)
    assert api.get(f"/v1/deletion-requests/{rid}/certificate", headers=_h(api)).status_code == 200

    trail = api.get(f"/v1/deletion-requests/{rid}/audit", headers=_h(api, "a")).json()
    changes = [(e["entity_type"], e["from_state"], e["to_state"]) for e in trail]
    assert ("request", "verifying", "completed") in changes and ("certificate", None, "issued") in changes
    assert any(e["entity_type"] == "job" for e in trail) and any(e["entity_type"] == "version" for e in trail)
    _problem(api.get(f"/v1/deletion-requests/{rid}/audit", headers=_h(api, "b")), 404)

    jobs = api.get("/v1/jobs", headers=_h(api)).json()
    assert [(j["stage"], j["progress"], j["queue"]) for j in jobs] == [("done", 1.0, "gpu")]
    overview = api.get("/v1/overview", headers=_h(api)).json()
    assert overview["funnel"]["completed"] == 1 and overview["funnel"]["received"] == 0


@pytest.mark.parametrize("method,path,body", [
    ("post", "/v1/deletion-requests/{rid}/approve", {"reason": "ok"}),
    ("post", "/v1/deletion-requests/{rid}/deny", {"reason": "no"}),
    ("post", "/v1/deletion-requests/{rid}/extend", {"days": 5, "reason": "complex"}),
    ("post", "/v1/jobs/x/retry", None),
    ("get", "/v1/jobs", None),
    ("get", "/v1/workers", None),
    ("get", "/v1/overview", None),
    ("get", "/v1/compliance", None),
    ("post", "/v1/models/digits-mlp/compliance-check", None),
])
def test_operator_endpoints_refuse_submitters(api, method, path, body):
    rid = post_request(api, SUBJECT).json()["id"]
    call = getattr(api, method)
    kwargs = {"json": body} if body is not None else {}
    _problem(call(path.format(rid=rid), headers=_h(api, "a"), **kwargs), 403)
    _problem(call(path.format(rid=rid), **kwargs), 401)


def test_review_approve_and_deny_are_audited(api):
    api.settings.review_required_for = ["class"]
    held = post_request(api, CLASS_3).json()
    other = post_request(api, {**CLASS_3, "scope": {"type": "class", "label": 4}}).json()
    assert held["status"] == "pending_review"
    _problem(api.post(f"/v1/deletion-requests/{held['id']}/approve", json={"reason": ""}, headers=_h(api)), 422)
    approved = api.post(f"/v1/deletion-requests/{held['id']}/approve", json={"reason": "identity verified"},
                        headers=_h(api))
    assert approved.status_code == 200 and approved.json()["status"] == "received"
    _problem(api.post(f"/v1/deletion-requests/{held['id']}/deny", json={"reason": "late"}, headers=_h(api)), 409)
    denied = api.post(f"/v1/deletion-requests/{other['id']}/deny", json={"reason": "art. 17(3)(b)"}, headers=_h(api))
    assert denied.json()["status"] == "rejected" and "art. 17(3)(b)" in denied.json()["reason"]
    trail = api.get(f"/v1/deletion-requests/{held['id']}/audit", headers=_h(api)).json()
    assert trail[-1]["actor"].startswith("key:") and "identity verified" in trail[-1]["reason"]
    listing = api.get("/v1/deletion-requests", params={"status": "pending_review"}, headers=_h(api)).json()
    assert listing["total"] == 0


def test_extend_due_date_with_a_reason_and_sla_flags(api):
    rid = post_request(api, SUBJECT).json()["id"]
    before = api.get(f"/v1/deletion-requests/{rid}", headers=_h(api)).json()
    _problem(api.post(f"/v1/deletion-requests/{rid}/extend", json={"days": 0, "reason": "x"}, headers=_h(api)), 422)
    _problem(api.post(f"/v1/deletion-requests/{rid}/extend", json={"days": 10}, headers=_h(api)), 422)
    after = api.post(f"/v1/deletion-requests/{rid}/extend", json={"days": 10, "reason": "art. 12(3) complexity"},
                     headers=_h(api)).json()
    assert round(after["days_left"] - before["days_left"]) == 10
    event = api.get(f"/v1/deletion-requests/{rid}/audit", headers=_h(api)).json()[-1]
    assert "extended by 10 days" in event["reason"] and event["data"]["due_at_before"]

    late = post_request(api, {**SUBJECT, "scope": {"type": "subject", "subject": "subject-0002"}}).json()["id"]
    soon = post_request(api, {**SUBJECT, "scope": {"type": "subject", "subject": "subject-0003"}}).json()["id"]
    with session_scope(api.settings.resolved_database_url) as s:
        s.get(DeletionRequest, late).due_at = utcnow() - timedelta(days=1)
        s.get(DeletionRequest, soon).due_at = utcnow() + timedelta(days=2)
    h = _h(api)
    overdue = api.get("/v1/deletion-requests", params={"flag": "overdue"}, headers=h).json()["items"]
    at_risk = api.get("/v1/deletion-requests", params={"flag": "at_risk"}, headers=h).json()["items"]
    assert [r["id"] for r in overdue] == [late] and overdue[0]["overdue"] and not overdue[0]["at_risk"]
    assert [r["id"] for r in at_risk] == [soon] and at_risk[0]["at_risk"]
    assert [r["id"] for r in api.get("/v1/deletion-requests", params={"q": soon[:8]}, headers=h).json()["items"]] == [soon]
    assert api.get("/v1/deletion-requests", params={"q": "tenant-a", "model": "digits-mlp"}, headers=h).json()["total"] == 3
    metrics = api.get("/metrics").text
    assert "unlearn_requests_overdue 1.0" in metrics and "unlearn_requests_at_risk 1.0" in metrics
    overview = api.get("/v1/overview", headers=h).json()
    assert (overview["overdue"], overview["at_risk"]) == (1, 1)
    api.post(f"/v1/deletion-requests/{rid}/cancel", headers=h)
    _problem(api.post(f"/v1/deletion-requests/{rid}/extend", json={"days": 3, "reason": "x"}, headers=h), 409)


def test_retry_of_a_failed_job_requeues_and_enqueues_it(api):
    from api.app import create_app

    sent: list[str] = []
    client = TestClient(create_app(api.settings, enqueue_jobs=sent.extend), raise_server_exceptions=False)
    rid = post_request(api, SUBJECT).json()["id"]
    job_id = _job(api.settings)
    with session_scope(api.settings.resolved_database_url) as s:
        s.get(UnlearningJob, job_id).max_attempts = 0  # gives up without running
    assert run_job(api.settings, job_id, "w").status == "failed"
    assert api.get(f"/v1/deletion-requests/{rid}", headers=_h(api)).json()["status"] == "failed"
    _problem(client.post("/v1/jobs/nope/retry", headers=_h(api)), 404)
    resp = client.post(f"/v1/jobs/{job_id}/retry", headers=_h(api))
    assert resp.status_code == 200 and resp.json()["stage"] == "queued" and resp.json()["attempts"] == 0
    assert sent == [job_id]
    (queue,) = api.get("/v1/overview", headers=_h(api)).json()["queues"]
    assert queue["queue"] == "gpu" and queue["depth"] == 1 and 0 <= queue["oldest_age_s"] < 60
    assert api.get(f"/v1/deletion-requests/{rid}", headers=_h(api)).json()["status"] == "queued"
    _problem(client.post(f"/v1/jobs/{job_id}/retry", headers=_h(api)), 409)


def test_worker_heartbeats_show_liveness_and_the_current_job(api):
    from unlearn.store.models import WorkerHeartbeat
    from workers.heartbeat import beat, running_job

    settings = api.settings
    beat(settings, "w1@host", "gpu")
    beat(settings, "w2@host", "cpu")
    with session_scope(settings.resolved_database_url) as s:
        s.get(WorkerHeartbeat, "w2@host").seen_at = utcnow() - timedelta(minutes=5)
    with running_job(settings, "w1@host", "job-123"):
        workers = {w["worker"]: w for w in api.get("/v1/workers", headers=_h(api)).json()}
    assert workers["w1@host"]["alive"] and workers["w1@host"]["current_job_id"] == "job-123"
    assert workers["w1@host"]["device"] == "cpu" and workers["w1@host"]["gpu_memory_mb"] is None
    assert not workers["w2@host"]["alive"]
    after = {w["worker"]: w for w in api.get("/v1/workers", headers=_h(api)).json()}
    assert after["w1@host"]["current_job_id"] is None
    assert api.get("/v1/overview", headers=_h(api)).json()["workers_alive"] == 1


def test_compliance_check_runs_the_check_and_audits_it(api, monkeypatch):
    monkeypatch.setitem(sys.modules, "unlearn.compliance", None)  # not built yet: 501
    _problem(api.post("/v1/models/digits-mlp/compliance-check", headers=_h(api)), 501)

    def run_compliance_check(session, settings, model_name, trigger="schedule"):
        champ = session.exec(select(ModelVersion).where(ModelVersion.model_name == model_name)).first()
        check = ComplianceCheck(model_name=model_name, version_id=champ.id, trigger=trigger, passed=False,
                                regression=True, forgotten=5, reopened_request_ids=["r1"])
        session.add(check)
        session.flush()
        return check

    monkeypatch.setitem(sys.modules, "unlearn.compliance",
                        types.SimpleNamespace(run_compliance_check=run_compliance_check))
    _problem(api.post("/v1/models/nope/compliance-check", headers=_h(api)), 404)
    resp = api.post("/v1/models/digits-mlp/compliance-check", headers=_h(api))
    assert resp.status_code == 200 and resp.json()["trigger"] == "operator" and resp.json()["regression"]
    summary = api.get("/v1/compliance", headers=_h(api)).json()
    assert [c["model"] for c in summary["latest"]] == ["digits-mlp"] and len(summary["regressions"]) == 1
    assert summary["reopened"][0]["request_id"] == "r1"
    with session_scope(api.settings.resolved_database_url) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "compliance")).one()
    assert event.actor.startswith("key:") and event.to_state == "failed"


def test_report_and_plots_only_from_the_artifact_root(api, tmp_path):
    root = api.settings.resolved_artifact_root
    png = root / "digits-mlp" / "reports" / "c6.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    versions = api.get("/v1/models/digits-mlp/versions", headers=_h(api, "a")).json()
    vid = versions[0]["id"]
    with session_scope(api.settings.resolved_database_url) as s:
        s.get(ModelVersion, vid).metrics = {"verdict": "pass", "criteria": {}, "plots": {
            "C6_sustainability": str(png), "outside": str(outside), "dotdot": str(png.parent / ".." / ".." / ".." / "x.png"),
            "text": str(root / "digits-mlp" / "v1" / "unlearn.json")}}
    base = f"/v1/models/digits-mlp/versions/{vid}/report"
    report = api.get(base, headers=_h(api, "a")).json()
    assert report["report"]["plots"]["C6_sustainability"] == f"{base}/plots/C6_sustainability"
    ok = api.get(f"{base}/plots/C6_sustainability", headers=_h(api, "a"))
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png" and ok.content.endswith(b"fake")
    for name in ("outside", "dotdot", "text", "missing"):
        _problem(api.get(f"{base}/plots/{name}", headers=_h(api, "a")), 404)
    _problem(api.get("/v1/models/digits-mlp/versions/nope/report", headers=_h(api, "a")), 404)


def test_dashboard_page_login_cookie_and_csrf_guard(api):
    page = api.get("/dashboard")
    assert page.status_code == 200 and "<main" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "://" not in page.text  # no external assets
    assert api.get("/dashboard/static/dashboard.js").headers["content-type"].startswith("text/javascript")
    for bad in ("..%2Fapp.py", "index.html", "nope.js"):
        assert api.get(f"/dashboard/static/{bad}").status_code == 404
    _problem(api.post("/dashboard/login", json={"api_key": api.keys["a"]}), 403)
    _problem(api.post("/dashboard/login", json={"api_key": "ul_wrong"}), 401)
    resp = api.post("/dashboard/login", json={"api_key": api.keys["op"]})
    cookie = resp.headers["set-cookie"]
    assert resp.status_code == 200 and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert api.get("/dashboard/session").json() == {"tenant": "ops", "role": "operator"}
    assert api.get("/v1/overview").status_code == 200  # the cookie authenticates
    rid = post_request(api, SUBJECT).json()["id"]
    _problem(api.post(f"/v1/deletion-requests/{rid}/cancel"), 403)  # a cookie alone cannot change anything
    assert api.post(f"/v1/deletion-requests/{rid}/cancel", headers={"X-Requested-With": "x"}).status_code == 200
    assert api.post("/dashboard/logout").status_code == 204
    _problem(api.get("/v1/overview"), 401)
