"""One model's fault never stalls the others: batching, reconciling and compliance sweeps handle each
model on its own, and the broken model's requests fail with a reason that names it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import register
from tests.procs import RedisServer, celery_worker
from unlearn.coalesce import coalesce
from unlearn.compliance import check_all
from unlearn.intake import DeletionRequestIn, submit
from unlearn.operations import reconcile
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import Alias, ComplianceCheck, DeletionRequest, UnlearningJob
from workers.celery_app import make_celery

HEALTHY, BROKEN = "digits-mlp", "digits-cnn"


def _two_models(settings, zoo_dir) -> Path:
    """Register both models; returns the broken model's champion folder (still in place)."""
    register(settings, zoo_dir, HEALTHY)
    return Path(register(settings, zoo_dir, BROKEN).artifact_path)


def _submit_one_each(settings) -> dict[str, str]:
    ids = {}
    with session_scope(settings.resolved_database_url) as s:
        for model in (BROKEN, HEALTHY):  # `auto`: batching reads the champion's metadata to pick the method
            body = DeletionRequestIn(model=model, scope={"type": "subject", "subject": "subject-0003"})
            ids[model] = submit(s, settings, "t", body)[0].id
    return ids


def _request(settings, rid) -> DeletionRequest:
    with session_scope(settings.resolved_database_url) as s:
        return s.get(DeletionRequest, rid)


@pytest.fixture()
def db_settings(empty_database, tmp_path):
    s = Settings(data_dir=tmp_path / "data", database_url=empty_database, batch_window_s=0.0, lease_s=30.0)
    migrate(s.resolved_database_url)
    return s


def test_a_missing_champion_folder_fails_only_its_own_models_requests(db_settings, zoo_dir, caplog):
    settings = db_settings
    broken_dir = _two_models(settings, zoo_dir)
    ids = _submit_one_each(settings)
    shutil.rmtree(broken_dir)
    with session_scope(settings.resolved_database_url) as s:
        job_ids = reconcile(s, settings)  # the reconciler batches through the same per-model path
    with session_scope(settings.resolved_database_url) as s:
        (job,) = [s.get(UnlearningJob, j) for j in job_ids]
        assert job.model_name == HEALTHY
    assert _request(settings, ids[HEALTHY]).status == "queued"
    broken = _request(settings, ids[BROKEN])
    assert broken.status == "failed"
    assert broken.reason.startswith(f"model {BROKEN} cannot be served: FileNotFoundError")
    assert sum(BROKEN in r.getMessage() for r in caplog.records if r.levelname == "ERROR") == 1
    with session_scope(settings.resolved_database_url) as s:  # nothing left to retry, nothing logged again
        assert coalesce(s, settings) == []
    assert sum(BROKEN in r.getMessage() for r in caplog.records if r.levelname == "ERROR") == 1


def test_a_compliance_sweep_records_the_broken_model_and_checks_the_others(db_settings, zoo_dir):
    settings = db_settings
    _two_models(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:  # a registration that lost its champion alias
        s.delete(s.get(Alias, (BROKEN, "champion")))
    with session_scope(settings.resolved_database_url) as s:
        checks = {c.model_name: c for c in check_all(s, settings)}
    assert checks[HEALTHY].passed
    assert not checks[BROKEN].passed and not checks[BROKEN].regression
    assert checks[BROKEN].report["error"].startswith(f"model {BROKEN} cannot be checked: RegistryError")
    with session_scope(settings.resolved_database_url) as s:
        assert len(s.exec(select(ComplianceCheck)).all()) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_a_healthy_model_is_served_beside_a_broken_one_by_a_real_worker(tmp_path, zoo_dir):
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        settings = Settings(data_dir=tmp_path / "data", broker_url=redis_server.url, batch_window_s=0.2,
                            lease_s=60.0)
        migrate(settings.resolved_database_url)
        broken_dir = _two_models(settings, zoo_dir)
        ids = _submit_one_each(settings)
        shutil.rmtree(broken_dir)
        env = {"UNLEARN_DATA_DIR": str(settings.data_dir), "UNLEARN_BROKER_URL": redis_server.url,
               "UNLEARN_DATABASE_URL": settings.resolved_database_url, "UNLEARN_LEASE_S": "60"}
        celery = make_celery(settings)
        with celery_worker(env, log=tmp_path / "worker.log"):
            celery.send_task("ops.reconcile")
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                statuses = {m: _request(settings, rid).status for m, rid in ids.items()}
                if all(st in ("completed", "rejected", "failed") for st in statuses.values()):
                    break
                time.sleep(0.5)
            celery.send_task("ops.compliance_sweep")
            while time.monotonic() < deadline:
                with session_scope(settings.resolved_database_url) as s:
                    checks = {c.model_name: c for c in s.exec(select(ComplianceCheck)).all()}
                if len(checks) == 2:
                    break
                time.sleep(0.5)
        log = (tmp_path / "worker.log").read_text()
        assert statuses == {HEALTHY: "completed", BROKEN: "failed"}, log[-3000:]
        assert _request(settings, ids[BROKEN]).reason.startswith(f"model {BROKEN} cannot be served:")
        assert checks[HEALTHY].passed, log[-3000:]
        assert not checks[BROKEN].passed and not checks[BROKEN].regression
    finally:
        redis_server.stop()
