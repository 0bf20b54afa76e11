"""Accepted means accepted: with the broker down, a committed request (or approval, or job retry) is
answered as usual, and the reconciler serves it once the broker is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from sqlmodel import select

from api.auth import create_api_key
from tests.conftest import register
from tests.procs import ROOT, TEST_SALT, RedisServer, celery_worker, free_port, wait_for_port
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import DeletionRequest, UnlearningJob
from workers.celery_app import make_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_requests_committed_while_the_broker_is_down_are_accepted_and_served_later(tmp_path, zoo_dir):
    redis_server = RedisServer(tmp_path / "redis")  # its port is chosen; nothing listens there yet
    settings = Settings(data_dir=tmp_path / "data", broker_url=redis_server.url, batch_window_s=0.2,
                        review_required_for=["class"], subject_salt=TEST_SALT)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "acme", "operator")
        failed = UnlearningJob(model_name="digits-mlp", method="retrain", stage="failed", attempts=3,
                               error="an earlier failure")
        s.add(failed)
    env = {"UNLEARN_DATA_DIR": str(settings.data_dir), "UNLEARN_BROKER_URL": redis_server.url,
           "UNLEARN_DATABASE_URL": settings.resolved_database_url, "UNLEARN_BATCH_WINDOW_S": "0.2",
           "UNLEARN_REVIEW_REQUIRED_FOR": json.dumps(["class"]), "UNLEARN_SUBJECT_SALT": TEST_SALT}
    port = free_port()
    log = tmp_path / "api.log"
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=open(log, "w"))  # noqa: SIM115
    try:
        wait_for_port(port, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30) as c:
            t0 = time.monotonic()
            subject = c.post("/v1/deletion-requests", headers={"Idempotency-Key": uuid.uuid4().hex},
                             json={"model": "digits-mlp", "method": "retrain",
                                   "scope": {"type": "subject", "subject": "subject-0005"}})
            assert subject.status_code == 202, subject.text
            assert time.monotonic() - t0 < 10  # a broker that is down is not waited for
            held = c.post("/v1/deletion-requests", headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"model": "digits-mlp", "method": "retrain", "scope": {"type": "class", "label": 7}})
            assert held.status_code == 202 and held.json()["status"] == "pending_review", held.text
            approved = c.post(f"/v1/deletion-requests/{held.json()['id']}/approve", json={"reason": "checked"})
            assert approved.status_code == 200 and approved.json()["status"] == "received", approved.text
            retried = c.post(f"/v1/jobs/{failed.id}/retry")
            assert retried.status_code == 200 and retried.json()["stage"] == "queued", retried.text
        ids = [subject.json()["id"], held.json()["id"]]
        with session_scope(settings.resolved_database_url) as s:
            assert [s.get(DeletionRequest, i).status for i in ids] == ["received", "received"]
        assert "could not send a batching run" in log.read_text()

        # The broker comes back: the reconciler batches what was accepted meanwhile, a worker serves it.
        redis_server.start()
        worker_env = {**env, "UNLEARN_LEASE_S": "60"}
        with celery_worker(worker_env, log=tmp_path / "worker.log"):
            make_celery(settings).send_task("ops.reconcile")
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                with session_scope(settings.resolved_database_url) as s:
                    statuses = [s.get(DeletionRequest, i).status for i in ids]
                if all(st in ("completed", "rejected", "failed") for st in statuses):
                    break
                time.sleep(0.5)
        assert statuses == ["completed", "completed"], (tmp_path / "worker.log").read_text()[-3000:]
        with session_scope(settings.resolved_database_url) as s:
            assert len(s.exec(select(UnlearningJob)).all()) == 3  # the retried job and one per request
    finally:
        server.terminate()
        server.wait(timeout=60)
        redis_server.stop()
