"""Through the HTTP API, a real Redis broker and a real Celery worker process, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import register
from tests.procs import RedisServer, celery_worker, postgres_database
from unlearn.families.classifier import dataset_of
from unlearn.models import get_arch
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.zoo import ensure
from workers.celery_app import make_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, tmp_path, zoo_dir, redis_server):
    def build(url: str | None):
        settings = Settings(data_dir=tmp_path / "data", database_url=url, broker_url=redis_server.url,
                            batch_window_s=0.5, lease_s=60, reconcile_interval_s=2.0)
        migrate(settings.resolved_database_url)
        register(settings, zoo_dir)
        env = {"UNLEARN_DATA_DIR": str(settings.data_dir), "UNLEARN_BROKER_URL": settings.broker_url,
               "UNLEARN_DATABASE_URL": settings.resolved_database_url, "UNLEARN_LEASE_S": "60"}
        return settings, env

    if request.param == "sqlite":
        yield build(None)
    else:
        with postgres_database() as url:
            yield build(url)


def _wait(client, ids, headers, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = [client.get(f"/v1/deletion-requests/{i}", headers=headers).json() for i in ids]
        if all(b["status"] in ("completed", "rejected", "failed") for b in bodies):
            return bodies
        time.sleep(0.5)
    raise TimeoutError(f"requests not finished: {[b['status'] for b in bodies]}")


def _predict(folder, X):
    from unlearn.artifacts import read_meta

    return get_arch(read_meta(folder)["arch"]).load(folder, "cpu")(X).argmax(1)


def test_requests_flow_through_redis_and_a_celery_worker(service, zoo_dir, tmp_path):
    settings, env = service
    celery_app = make_celery(settings)
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "acme", "operator")
    app = create_app(settings, schedule_coalesce=lambda d: celery_app.send_task(
        "ops.coalesce", kwargs={"force": True}, countdown=d))
    client = TestClient(app)
    h = {"X-API-Key": key}
    bodies = [{"model": "digits-mlp", "scope": {"type": "class", "label": 3}, "method": "retrain"},
              {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}},
              {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0002"}}]
    with celery_worker(env, log=tmp_path / "worker.log"):
        ids = []
        for body in bodies:
            resp = client.post("/v1/deletion-requests", json=body, headers={**h, "Idempotency-Key": uuid.uuid4().hex})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        done = _wait(client, ids, h)
        workers = client.get("/v1/workers", headers=h).json()  # the prefork parent's heartbeat thread
    worker_log = (tmp_path / "worker.log").read_text()
    assert [b["status"] for b in done] == ["completed"] * 3, worker_log[-3000:]
    assert "subject-0001" not in worker_log and "subject-0002" not in worker_log  # no personal data in logs
    assert [(w["alive"], w["queues"]) for w in workers] == [(True, "cpu,gpu")], workers
    for rid in ids:
        assert client.get(f"/v1/deletion-requests/{rid}/certificate", headers=h).status_code == 200
    # The two subject requests arrived together: one job served both.
    assert done[1]["jobs"][0]["id"] == done[2]["jobs"][0]["id"]
    assert all(j["attempts"] == 1 for b in done for j in b["jobs"])

    versions = client.get("/v1/models/digits-mlp/versions", headers=h).json()
    champion = next(v for v in versions if v["status"] == "promoted")
    assert champion["version"] == 3 and versions[0]["tainted"]

    # The champion agrees with the original on the forgotten samples no more than the retrain reference does.
    original = ensure("digits-mlp", zoo_dir)
    data = dataset_of(original)
    forgotten = sorted({s for b in done for s in _forget_ids(settings, b["id"])})
    keep = [s for s in data.ids_in("train") if s not in set(forgotten)]
    from unlearn.families import get_family

    get_family("classifier").retrain(original, keep, tmp_path / "ref")
    X, _ = data.take(forgotten)
    from unlearn.store.models import ModelVersion

    with session_scope(settings.resolved_database_url) as s:
        champ_dir = s.get(ModelVersion, champion["id"]).artifact_path
    base = _predict(original, X)
    agree_champion = float(np.mean(_predict(champ_dir, X) == base))
    agree_reference = float(np.mean(_predict(tmp_path / "ref", X) == base))
    assert agree_champion <= agree_reference + 0.02
    assert agree_champion < 0.9  # a whole class is gone: the original's answers cannot survive


def _forget_ids(settings, request_id):
    from sqlmodel import select

    from unlearn.store.models import RequestTarget

    with session_scope(settings.resolved_database_url) as s:
        return [sid for t in s.exec(select(RequestTarget).where(RequestTarget.request_id == request_id))
                for sid in t.forget_ids]
