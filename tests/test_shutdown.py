"""Shutdown hands work back: a clean stop during a job returns it to the queue with its lease released
(the embedded `unlearn serve` and a production `celery worker` alike), and what a cut-short write left
behind is cleared before the next attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from api.auth import create_api_key
from tests.conftest import register
from tests.fault_methods import PLUGINS
from tests.procs import ROOT, RedisServer, celery_worker, free_port, wait_for_port
from unlearn.intake import DeletionRequestIn, submit
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, UnlearningJob
from unlearn.verification import seed_reference
from workers.celery_app import make_celery

GRACE_S = 2.0


def _job(settings) -> UnlearningJob | None:
    with session_scope(settings.resolved_database_url) as s:
        return s.exec(select(UnlearningJob)).first()


def _wait(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:] if log else ''}")


def _running(settings) -> bool:
    job = _job(settings)
    return job is not None and job.stage == "unlearning" and job.progress > 0.02


def _handed_back(settings) -> None:
    """The job is queued again, owned by nobody, with no lease; its request waits in the queue."""
    job = _job(settings)
    assert (job.stage, job.lease_until, job.worker) == ("queued", None, None)
    assert job.max_attempts == 4  # the attempt the shutdown cut short is not counted against the job
    with session_scope(settings.resolved_database_url) as s:
        (request,) = s.exec(select(DeletionRequest)).all()
        assert request.status == "queued"
        events = s.exec(select(AuditEvent).where(AuditEvent.entity_id == job.id,
                                                 AuditEvent.to_state == "queued")).all()
        assert any("handed back" in (e.reason or "") for e in events)


@pytest.mark.slow
def test_sigterm_of_unlearn_serve_mid_job_hands_the_job_back(tmp_path, zoo_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "zoo").symlink_to(zoo_dir)
    settings = Settings(data_dir=data)  # the default lease, 900 s: a restart must not wait for it
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "ops", "operator")
    env = {**os.environ, "UNLEARN_DATA_DIR": str(data), "UNLEARN_BATCH_WINDOW_S": "0.2",
           "UNLEARN_EXTRA_METHODS": json.dumps(PLUGINS), "UNLEARN_SHUTDOWN_GRACE_S": str(GRACE_S),
           "PYTHONPATH": str(ROOT)}
    port = free_port()
    log = tmp_path / "serve.log"

    def serve() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(log, "a"))  # noqa: SIM115
        wait_for_port(port, timeout=60)
        return proc

    server = serve()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30) as c:
            resp = c.post("/v1/deletion-requests", headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"model": "digits-mlp", "method": "slow", "params": {"sleep_s": 6},
                                "scope": {"type": "subject", "subject": "subject-0002"}})
            assert resp.status_code == 202, resp.text
            rid = resp.json()["id"]
        _wait(lambda: _running(settings), 60, "the job to start", log)
        server.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        server.wait(timeout=GRACE_S + 30)
        assert time.monotonic() - t0 < GRACE_S + 15, log.read_text()[-3000:]
        _handed_back(settings)
        job_id = _job(settings).id

        server = serve()  # the reconciler sends the handed-back job again at start
        t0 = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30) as c:
            _wait(lambda: c.get(f"/v1/deletion-requests/{rid}").json()["status"] in ("completed", "failed",
                                                                                    "rejected"), 120,
                  "the request to finish after the restart", log)
            assert c.get(f"/v1/deletion-requests/{rid}").json()["status"] == "completed", log.read_text()[-3000:]
        assert time.monotonic() - t0 < 120  # far from the 900 s lease
        job = _job(settings)
        assert (job.stage, job.attempts) == ("done", 2)
        # The first attempt's folder, cut short, was cleared when the second attempt started.
        attempts = sorted(p.name for p in (settings.resolved_artifact_root / "digits-mlp" / "jobs" / job_id).iterdir())
        assert attempts == ["attempt-2"]
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)


@pytest.mark.integration
@pytest.mark.slow
def test_a_warm_shutdown_of_a_celery_worker_hands_its_job_back_after_the_grace(tmp_path, zoo_dir):
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        settings = Settings(data_dir=tmp_path / "data", broker_url=redis_server.url, batch_window_s=0.2,
                            extra_methods=PLUGINS)
        migrate(settings.resolved_database_url)
        register(settings, zoo_dir)
        celery = make_celery(settings)  # registers the slow method with intake too
        with session_scope(settings.resolved_database_url) as s:
            submit(s, settings, "t", DeletionRequestIn(model="digits-mlp", method="slow", params={"sleep_s": 60},
                                                       scope={"type": "subject", "subject": "subject-0002"}))
        env = {"UNLEARN_DATA_DIR": str(settings.data_dir), "UNLEARN_BROKER_URL": redis_server.url,
               "UNLEARN_DATABASE_URL": settings.resolved_database_url, "UNLEARN_EXTRA_METHODS": json.dumps(PLUGINS),
               "UNLEARN_SHUTDOWN_GRACE_S": str(GRACE_S)}
        log = tmp_path / "worker.log"
        with celery_worker(env, log=log) as worker:
            celery.send_task("ops.coalesce", kwargs={"force": True})
            _wait(lambda: _running(settings), 60, "the job to start", log)
            worker.send_signal(signal.SIGTERM)  # the main process: Celery's warm shutdown
            t0 = time.monotonic()
            worker.wait(timeout=GRACE_S + 30)
            assert time.monotonic() - t0 < GRACE_S + 15, log.read_text()[-3000:]
        _handed_back(settings)
    finally:
        redis_server.stop()


def test_a_half_copied_reference_older_than_the_lease_is_removed(settings, tmp_path):
    references = settings.resolved_artifact_root / "digits-mlp" / "references"
    stale, fresh = references / "abc.tmp-1", references / "def.tmp-2"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    old = time.time() - settings.lease_s - 60
    for path in (stale / "model.safetensors", stale):
        os.utime(path, (old, old))
    source = tmp_path / "candidate"
    source.mkdir()
    (source / "unlearn.json").write_text("{}")
    seed_reference(settings, "digits-mlp", ["digits-0001"], source)
    assert not stale.exists()
    assert fresh.exists()  # another worker may still be writing it
    assert [p.name for p in references.iterdir() if ".tmp-" not in p.name]  # the seeded reference itself
