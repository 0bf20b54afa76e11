"""Fault injection with real processes: redis-server, celery workers (prefork), beat, the API.

Nothing accepted may be lost: each test breaks something for real and checks that every
request still ends where it should, with no job run twice at the same time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import redis
from sqlmodel import func, select

from tests.conftest import register
from tests.fault_methods import PLUGINS
from tests.procs import (
    ROOT,
    TEST_SALT,
    RedisServer,
    celery_worker,
    free_port,
    postgres_database,
    wait_for_port,
)
from unlearn.intake import DeletionRequestIn, submit
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, ModelVersion, UnlearningJob
from workers.celery_app import make_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Service:
    """Settings, environment and helpers for one fault scenario."""

    def __init__(self, tmp_path, zoo_dir, redis_server: RedisServer, database_url: str | None = None, **over):
        base = {"lease_s": 4.0, "visibility_timeout_s": 60, "task_time_limit_s": 50, "task_soft_time_limit_s": 45,
                "batch_window_s": 0.2, "reconcile_interval_s": 1.0, "requeue_after_s": 2.0, "max_attempts": 3,
                "subject_salt": TEST_SALT}
        base.update(over)
        self.tmp = tmp_path
        self.redis = redis_server
        self.settings = Settings(data_dir=tmp_path / "data", database_url=database_url, broker_url=redis_server.url,
                                 extra_methods=PLUGINS, **base)
        migrate(self.settings.resolved_database_url)
        register(self.settings, zoo_dir)
        self.env = {"UNLEARN_DATA_DIR": str(self.settings.data_dir), "UNLEARN_BROKER_URL": redis_server.url,
                    "UNLEARN_DATABASE_URL": self.settings.resolved_database_url,
                    "UNLEARN_EXTRA_METHODS": json.dumps(PLUGINS),
                    **{f"UNLEARN_{k.upper()}": str(v) for k, v in base.items()}}
        self.celery = make_celery(self.settings)
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)

    def submit(self, n=1, method="slow", params=None, start=1):
        ids = []
        with session_scope(self.settings.resolved_database_url) as s:
            for i in range(start, start + n):
                body = DeletionRequestIn(model="digits-mlp", method=method, params=params or {},
                                         scope={"type": "subject", "subject": f"subject-{i:04d}"})
                ids.append(submit(s, self.settings, "t", body)[0].id)
        self.celery.send_task("ops.coalesce", kwargs={"force": True})
        return ids

    def worker(self, name="w", **kw):
        return celery_worker(self.env, name=f"{name}-{uuid.uuid4().hex[:4]}@localhost",
                             log=self.logs / f"{name}.log", **kw)

    @contextmanager
    def beat(self):
        cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
               "-s", str(self.tmp / f"beat-{uuid.uuid4().hex[:4]}")]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
                                stdout=open(self.logs / "beat.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                start_new_session=True)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def jobs(self):
        with session_scope(self.settings.resolved_database_url) as s:
            return s.exec(select(UnlearningJob)).all()

    def statuses(self, ids):
        with session_scope(self.settings.resolved_database_url) as s:
            return [s.get(DeletionRequest, i).status for i in ids]

    def wait(self, predicate, timeout=120, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.25)
        logs = "\n".join(p.read_text()[-2500:] for p in self.logs.glob("*.log"))
        raise AssertionError(f"timed out waiting for {what}; jobs: "
                             f"{[(j.stage, j.attempts, j.error) for j in self.jobs()]}\n{logs}")

    def wait_final(self, ids, timeout=120):
        self.wait(lambda: all(s in ("completed", "rejected", "failed") for s in self.statuses(ids)), timeout,
                  "requests to finish")
        return self.statuses(ids)

    def versions(self):
        with session_scope(self.settings.resolved_database_url) as s:
            return s.exec(select(func.count()).select_from(ModelVersion)).one()

    def claims(self, job_id):
        with session_scope(self.settings.resolved_database_url) as s:
            return s.exec(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.entity_id == job_id, AuditEvent.to_state == "unlearning")).one()


@pytest.fixture()
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture()
def svc(tmp_path, zoo_dir, redis_server):
    return Service(tmp_path, zoo_dir, redis_server)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _running(svc):
    jobs = svc.jobs()
    return bool(jobs) and jobs[0].stage == "unlearning" and jobs[0].progress > 0.05


def test_sigkill_of_the_pool_child_mid_job_is_redelivered_and_completes_once(svc):
    ids = svc.submit(method="slow", params={"sleep_s": 6})
    with svc.worker("w1") as proc:
        svc.wait(lambda: _running(svc), what="the job to start")
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)
        assert svc.wait_final(ids) == ["completed"]
    (job,) = svc.jobs()
    assert (job.stage, job.attempts) == ("done", 2)
    assert svc.versions() == 2  # the original and exactly one promoted candidate


def test_sigkill_of_the_whole_worker_is_recovered_by_a_fresh_worker(svc):
    ids = svc.submit(method="slow", params={"sleep_s": 6})
    with svc.worker("w1") as proc:
        svc.wait(lambda: _running(svc), what="the job to start")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # The message stays unacked in Redis; the lease runs out; the reconciler hands the job on.
    with svc.worker("w2"), svc.beat():
        assert svc.wait_final(ids) == ["completed"]
    (job,) = svc.jobs()
    assert job.attempts == 2 and job.worker.startswith("w2")
    assert svc.versions() == 2


def test_a_job_longer_than_the_visibility_timeout_never_runs_twice_at_once(tmp_path, zoo_dir, redis_server):
    svc = Service(tmp_path, zoo_dir, redis_server, visibility_timeout_s=2, lease_s=3, restore_interval_s=1)
    ids = svc.submit(method="slow", params={"sleep_s": 9})
    with svc.worker("w1"), svc.worker("w2"):
        assert svc.wait_final(ids, timeout=90) == ["completed"]
        time.sleep(3)  # let any late redelivery arrive and give up
    (job,) = svc.jobs()
    assert job.attempts == 1 and svc.claims(job.id) == 1
    assert svc.versions() == 2
    busy = "".join(p.read_text() for p in svc.logs.glob("w*.log"))
    assert "busy" in busy or "skipped" in busy  # the second delivery came, and stood down


def test_redis_restart_with_aof_loses_nothing_and_workers_resume(svc, redis_server):
    ids = svc.submit(n=2, method="retrain")
    redis_server.stop()  # SIGTERM: AOF flushed
    redis_server.start()
    with svc.worker("w1"):
        assert svc.wait_final(ids) == ["completed", "completed"]
        redis_server.stop()
        redis_server.start()
        more = svc.submit(n=1, method="retrain", start=10)
        assert svc.wait_final(more, timeout=90) == ["completed"]


def test_a_wiped_broker_is_refilled_from_the_database(svc, redis_server):
    with svc.worker("cpu-only", queues="cpu"):
        ids = svc.submit(n=2, method="retrain")
        svc.wait(lambda: len(svc.jobs()) == 1, what="coalescing")
    pending = svc.submit(n=1, method="retrain", start=20)  # not even coalesced yet
    redis.Redis.from_url(redis_server.url).flushall()
    with svc.worker("w1"), svc.beat():
        assert svc.wait_final(ids + pending) == ["completed"] * 3


def test_poison_jobs_fail_after_the_attempt_cap_without_looping(svc, redis_server):
    crash = svc.submit(method="crash")
    with svc.worker("w1"):
        assert svc.wait_final(crash, timeout=90) == ["failed"]
        die = svc.submit(method="die", start=30)
        with svc.beat():
            assert svc.wait_final(die, timeout=120) == ["failed"]
        time.sleep(3)
    jobs = {j.method: j for j in svc.jobs()}
    assert jobs["crash"].attempts == 3 and "simulated crash" in jobs["crash"].error
    assert jobs["die"].attempts == 3 and jobs["die"].stage == "failed"
    with session_scope(svc.settings.resolved_database_url) as s:
        assert "job failed" in s.get(DeletionRequest, crash[0]).reason
    assert svc.versions() == 1
    r = redis.Redis.from_url(redis_server.url)
    assert r.llen("gpu") == 0  # nothing left looping


def test_an_api_restart_mid_burst_loses_no_accepted_request(tmp_path, zoo_dir, redis_server):
    with postgres_database() as url, ExitStack() as stack:
        svc = Service(tmp_path, zoo_dir, redis_server, database_url=url, batch_window_s=0.5)
        from api.auth import create_api_key

        with session_scope(url) as s:
            key = create_api_key(s, "acme", "submitter")
        port = free_port()

        def start_api():
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], cwd=ROOT,
                                    env={**os.environ, **svc.env, "PYTHONPATH": str(ROOT)},
                                    stdout=subprocess.DEVNULL, stderr=open(svc.logs / "api.log", "ab"))  # noqa: SIM115
            wait_for_port(port, timeout=60)
            return proc

        api = start_api()
        stack.enter_context(svc.worker("w1"))
        accepted: list[str] = []
        refused: list[tuple[int, str]] = []
        from unlearn.data import get_dataset

        train_ids = get_dataset({"name": "digits", "seed": 0}).ids_in("train")
        stop_burst = threading.Event()

        def burst():
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=5) as c:
                for i, sample in enumerate(train_ids[:60]):
                    idem = f"burst-{i}"
                    body = {"model": "digits-mlp", "method": "retrain",
                            "scope": {"type": "samples", "sample_ids": [sample]}}
                    for _attempt in range(100):  # a client retries with the same key until it gets an answer
                        try:
                            r = c.post("/v1/deletion-requests", json=body, headers={"Idempotency-Key": idem})
                            if r.status_code == 202:
                                accepted.append(r.json()["id"])
                            else:
                                refused.append((r.status_code, r.text[:200]))
                            break
                        except httpx.TransportError:
                            time.sleep(0.2)
                    if stop_burst.is_set():
                        return

        t = threading.Thread(target=burst)
        t.start()
        svc.wait(lambda: len(accepted) >= 20, timeout=60, what="the first accepted requests")
        api.send_signal(signal.SIGKILL)
        api.wait()
        api = start_api()
        t.join(timeout=180)
        stop_burst.set()
        try:
            assert refused == [] and len(accepted) == 60 and len(set(accepted)) == 60
            stack.enter_context(svc.beat())  # requests accepted just before the kill are batched by the reconciler
            assert set(svc.wait_final(accepted, timeout=240)) == {"completed"}
        finally:
            api.terminate()
            api.wait(timeout=30)
