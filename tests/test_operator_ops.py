"""What an operator trips over: who an audit event's actor is (a key's label, tenant and role; a worker),
API keys labelled at creation, and `unlearn serve`'s embedded runtime running the periodic tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from sqlmodel import select

from tests.conftest import ROOT, post_request
from unlearn.store.db import session_scope
from unlearn.store.models import ApiKey, ComplianceCheck


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_api_key_create_stores_its_label(tmp_path):
    env = {**os.environ, "UNLEARN_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = _cli(env, "api-key", "create", "--tenant", "acme", "--role", "operator", "--label", "Jane Roe, privacy desk")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("ul_")
    proc = _cli(env, "api-key", "create", "--tenant", "acme", "--role", "operator", "--label", "x" * 129)
    assert proc.returncode != 0 and "label" in proc.stderr and proc.stderr.strip().count("\n") == 0
    from unlearn.settings import Settings

    with session_scope(Settings(data_dir=tmp_path).resolved_database_url) as s:
        assert [(k.tenant, k.role, k.label) for k in s.exec(select(ApiKey)).all()] == [
            ("acme", "operator", "Jane Roe, privacy desk")]


def test_the_audit_trail_names_each_actor(api):
    from api.auth import create_api_key
    from unlearn.coalesce import coalesce
    from unlearn.jobs import run_job

    settings = api.settings
    with session_scope(settings.resolved_database_url) as s:
        api.keys["desk"] = create_api_key(s, "tenant-a", "submitter", label="Privacy desk")
    resp = post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}},
                        key="desk")
    assert resp.status_code == 202, resp.text
    rid = resp.json()["id"]
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    task = str(uuid.uuid4())
    assert run_job(settings, job_id, f"gpu-1@node-7:{task}").status == "done"
    trail = api.get(f"/v1/deletion-requests/{rid}/audit", headers={"X-API-Key": api.keys["op"]}).json()
    actors = {e["actor"]: e["actor_detail"] for e in trail}

    (key_actor,) = [a for a in actors if a.startswith("key:")]
    assert actors[key_actor] == {"kind": "api-key", "display": "Privacy desk (submitter, tenant tenant-a)",
                                 "key_id": key_actor[4:], "tenant": "tenant-a", "role": "submitter",
                                 "label": "Privacy desk", "worker": None, "task_id": None}
    assert actors[f"gpu-1@node-7:{task}"] == {"kind": "worker", "display": "worker gpu-1@node-7", "key_id": None,
                                              "tenant": None, "role": None, "label": None, "worker": "gpu-1@node-7",
                                              "task_id": task}
    assert actors["coalescer"]["kind"] == "service" and actors["coalescer"]["display"] == "coalescer"

    # An unlabelled key is named by its role, id prefix and tenant; the operator's cancel shows it.
    resp = post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0002"}})
    rid = resp.json()["id"]
    assert api.post(f"/v1/deletion-requests/{rid}/cancel", headers={"X-API-Key": api.keys["op"]}).status_code == 200
    trail = api.get(f"/v1/deletion-requests/{rid}/audit", headers={"X-API-Key": api.keys["op"]}).json()
    shown = [e["actor_detail"]["display"] for e in trail]
    assert any(d.startswith("submitter key ") and d.endswith("(submitter, tenant tenant-a)") for d in shown)
    assert any(d.startswith("operator key ") and d.endswith("(operator, tenant ops)") for d in shown)

    # The submitter reading the same trail sees their own key named, and the operator only as an operator.
    trail = api.get(f"/v1/deletion-requests/{rid}/audit", headers={"X-API-Key": api.keys["a"]}).json()
    canceled = next(e["actor_detail"] for e in trail if e["to_state"] == "canceled")
    assert canceled["display"] == "an operator" and canceled["tenant"] is None and canceled["label"] is None
    assert any(e["actor_detail"]["tenant"] == "tenant-a" for e in trail)


@pytest.mark.slow
def test_the_embedded_runtime_runs_the_compliance_sweep(digits_service):
    """`unlearn serve` without a broker runs no beat process: the embedded runtime sends the beat schedule's
    tasks itself, so a model gets its scheduled compliance checks (the dashboard no longer says
    "never checked" forever)."""
    from workers.embedded import embedded_worker, periodic_schedule

    settings = digits_service.model_copy(update={"compliance_interval_s": 1.0, "reconcile_interval_s": 1.0})
    with embedded_worker(settings) as app:
        assert {e["task"] for e in periodic_schedule(app).values()} >= {"ops.reconcile", "ops.compliance_sweep"}
        deadline = time.monotonic() + 240
        checks = []
        while time.monotonic() < deadline and not checks:
            time.sleep(0.5)
            with session_scope(settings.resolved_database_url) as s:
                checks = s.exec(select(ComplianceCheck).where(ComplianceCheck.model_name == "digits-mlp")).all()
    assert checks and checks[0].trigger == "schedule" and checks[0].passed
