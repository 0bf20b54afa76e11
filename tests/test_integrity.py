"""Artifacts are checked against their sha256 manifests whenever they are about to be used: a job's
base, a cached retrain reference, a rollback target, a champion under a compliance check. Each test
flips one bit of a real artifact file and checks that the corrupt weights are never used."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.conftest import copy_version, post_request, register
from tests.procs import RedisServer, celery_worker, postgres_database
from unlearn import artifacts, manifests, registry
from unlearn.coalesce import coalesce
from unlearn.compliance import run_compliance_check
from unlearn.jobs import run_job
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import (
    AuditEvent,
    Certificate,
    DeletionRequest,
    ModelVersion,
    RequestTarget,
    TrainingRecord,
    UnlearningJob,
)
from unlearn.verification import reference_model

SUBJECT = {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}}
MISMATCH = "artifact integrity: model.safetensors of version {v} ({id}) does not match its manifest"


def flip_bit(path: Path) -> None:
    """Flip one bit in place: the top exponent bit of a float32 in the middle of the tensor data."""
    with path.open("r+b") as f:
        f.seek((path.stat().st_size // 2) | 3)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x40]))


def _serve(settings):
    with session_scope(settings.resolved_database_url) as s:
        job_ids = coalesce(s, settings, force=True)
    return [run_job(settings, j, "w") for j in job_ids]


def _version(s, n: int) -> ModelVersion:
    return s.exec(select(ModelVersion).where(ModelVersion.model_name == "digits-mlp", ModelVersion.version == n)).one()


def _quarantine_events(s) -> list[AuditEvent]:
    return s.exec(select(AuditEvent).where(AuditEvent.entity_type == "version",
                                           AuditEvent.to_state == "quarantined")).all()


def test_the_digest_cache_hashes_once_yet_sees_every_change(tmp_path, monkeypatch):
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "unlearn.json").write_text("{}")
    registry.write_manifest(folder)
    hashed = []
    real = manifests.sha256_file
    monkeypatch.setattr(manifests, "sha256_file", lambda p: hashed.append(p.name) or real(p))

    # Just written: a change in the same timestamp tick would look unchanged, so it is hashed every time.
    registry.verify_artifact(folder, "version 1 (x)")
    hashed.clear()
    registry.verify_artifact(folder, "version 1 (x)")
    assert sorted(hashed) == ["model.safetensors", "unlearn.json"]
    weights = folder / "model.safetensors"
    before = weights.stat()
    flip_bit(weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with its mtime put back
    with pytest.raises(registry.ArtifactIntegrityError, match=r"^artifact integrity: model\.safetensors of "
                       r"version 1 \(x\) does not match its manifest$"):
        registry.verify_artifact(folder, "version 1 (x)")
    flip_bit(weights)  # back to the registered bytes

    time.sleep(manifests.RACY_NS / 1e9 + 0.2)  # settled: hashed once, then answered from the cache
    registry.verify_artifact(folder, "version 1 (x)")
    hashed.clear()
    registry.verify_artifact(folder, "version 1 (x)")
    assert hashed == []
    before = weights.stat()
    flip_bit(weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # the ctime still moved
    with pytest.raises(registry.ArtifactIntegrityError):
        registry.verify_artifact(folder, "version 1 (x)")
    assert hashed == ["model.safetensors"]
    flip_bit(weights)

    (folder / "unlearn.json").unlink()
    with pytest.raises(registry.ArtifactIntegrityError, match="unlearn.json of version 1"):
        registry.verify_artifact(folder, "version 1 (x)")
    (folder / registry.MANIFEST).unlink()
    with pytest.raises(registry.ArtifactIntegrityError, match="manifest.json of version 1"):
        registry.verify_artifact(folder, "version 1 (x)")


def test_a_corrupt_base_fails_the_job_at_once_and_is_quarantined(api):
    settings = api.settings
    url = settings.resolved_database_url
    with session_scope(url) as s:
        v1 = _version(s, 1)
    flip_bit(Path(v1.artifact_path) / "model.safetensors")
    rid = post_request(api, SUBJECT).json()["id"]

    (outcome,) = _serve(settings)
    reason = MISMATCH.format(v=1, id=v1.id)
    assert (outcome.status, outcome.detail) == ("failed", reason)
    with session_scope(url) as s:
        (job,) = s.exec(select(UnlearningJob)).all()
        assert (job.stage, job.attempts, job.error) == ("failed", 1, reason)
        request = s.get(DeletionRequest, rid)
        assert request.status == "failed" and reason in request.reason
        assert [t.status for t in s.exec(select(RequestTarget)).all()] == ["failed"]
        assert [v.version for v in s.exec(select(ModelVersion)).all()] == [1]  # nothing registered or promoted
        assert s.exec(select(Certificate)).all() == []
        assert registry.champion(s, "digits-mlp").status == "quarantined"
        (event,) = _quarantine_events(s)
        assert (event.entity_id, event.reason) == (v1.id, reason)
    assert run_job(settings, job.id, "late").status == "skipped"  # never retried

    h = {"X-API-Key": api.keys["op"]}
    versions = api.get("/v1/models/digits-mlp/versions", headers=h).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "quarantined")]
    assert "unlearn_versions_quarantined 1.0" in api.get("/metrics").text

    # A quarantined champion fails the next request at once as well, even if its files came back.
    flip_bit(Path(v1.artifact_path) / "model.safetensors")
    post_request(api, {**SUBJECT, "scope": {"type": "subject", "subject": "subject-0002"}})
    (outcome,) = _serve(settings)
    assert outcome.status == "failed" and "is quarantined" in outcome.detail


def test_a_corrupt_cached_reference_is_rebuilt(api, caplog):
    settings = api.settings
    url = settings.resolved_database_url
    rid = post_request(api, SUBJECT).json()["id"]
    with session_scope(url) as s:
        v1 = _version(s, 1)
        forget = {sid for t in s.exec(select(RequestTarget)).all() for sid in t.forget_ids}
        train = s.exec(select(TrainingRecord.sample_id).where(TrainingRecord.split == "train")).all()
    keep = sorted(set(train) - forget)
    # The reference this request's job will verify against, cached beforehand, then corrupted on disk.
    cached, _ = reference_model(settings, "digits-mlp", v1, keep, device="cpu", family="classifier")
    intact_sha = registry.build_manifest(cached)["sha256"]
    flip_bit(cached / "model.safetensors")

    with caplog.at_level(logging.WARNING, logger="unlearn.verification"):
        (outcome,) = _serve(settings)
    assert outcome.status == "done", outcome.detail
    with session_scope(url) as s:
        version = s.get(ModelVersion, outcome.version_id)
        report = version.metrics
        assert s.get(DeletionRequest, rid).status == "completed" and version.status == "promoted"
    rebuilt = report["reference_rebuilt"]
    assert rebuilt.startswith("artifact integrity: model.safetensors of reference ") and "discarded" in rebuilt
    assert rebuilt in caplog.text
    # The verdict was computed against the rebuilt reference, bit for bit the one first cached.
    assert report["reference"] == str(cached) and report["verdict"] == "pass"
    assert registry.check_manifest(cached) == [] and registry.build_manifest(cached)["sha256"] == intact_sha


def test_a_corrupt_rollback_target_is_refused_and_quarantined(api, tmp_path):
    settings = api.settings
    url = settings.resolved_database_url
    with session_scope(url) as s:
        v1 = _version(s, 1)
        v2 = copy_version(s, v1, tmp_path / "copy", "a")
    flip_bit(artifacts.locate(v2.artifact_path) / "model.safetensors")  # the bytes it loads (a delta's composed copy)

    h = {"X-API-Key": api.keys["op"]}
    resp = api.post("/v1/models/digits-mlp/rollback", json={"version_id": v2.id, "reason": "try"}, headers=h)
    assert resp.status_code == 409 and resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["detail"] == MISMATCH.format(v=2, id=v2.id)
    again = api.post("/v1/models/digits-mlp/rollback", json={"version_id": v2.id, "reason": "again"}, headers=h)
    assert again.status_code == 409 and "is quarantined" in again.json()["detail"]
    with session_scope(url) as s:
        assert registry.champion(s, "digits-mlp").id == v1.id
        assert (_version(s, 1).status, _version(s, 2).status) == ("promoted", "quarantined")
        assert [e.entity_id for e in _quarantine_events(s)] == [v2.id]
        moves = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "alias")).all()
        assert [e.reason for e in moves] == ["model imported"]
        with pytest.raises(registry.ArtifactIntegrityError):  # a promotion is refused the same way
            registry.move_alias(s, "digits-mlp", _version(s, 2), expected=v1.id, actor="t", reason="promote")
    versions = api.get("/v1/models/digits-mlp/versions", headers=h).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "promoted"), (2, "quarantined")]


def test_a_corrupt_champion_under_compliance_is_quarantined_not_a_regression(api):
    settings = api.settings
    url = settings.resolved_database_url
    rid = post_request(api, SUBJECT).json()["id"]
    assert [o.status for o in _serve(settings)] == ["done"]
    with session_scope(url) as s:
        champ = registry.champion(s, "digits-mlp")
    flip_bit(artifacts.locate(champ.artifact_path) / "model.safetensors")

    resp = api.post("/v1/models/digits-mlp/compliance-check", headers={"X-API-Key": api.keys["op"]})
    assert resp.status_code == 200, resp.text
    check = resp.json()
    assert not check["passed"] and not check["regression"] and check["reopened_request_ids"] == []
    with session_scope(url) as s:
        assert s.get(DeletionRequest, rid).status == "completed"
        assert s.get(ModelVersion, champ.id).status == "quarantined"
        assert not s.get(ModelVersion, champ.id).tainted
        assert [e.entity_id for e in _quarantine_events(s)] == [champ.id]
        assert not s.exec(select(AuditEvent).where(AuditEvent.to_state == "compliance-regression")).all()
        again = run_compliance_check(s, settings, "digits-mlp")  # the row says why, every time
        assert again.report["integrity"].startswith(f"artifact integrity: version {champ.version} ({champ.id}) "
                                                    "is quarantined")
        assert not again.passed and not again.regression
    metrics = api.get("/metrics").text
    assert "unlearn_versions_quarantined 1.0" in metrics and "unlearn_compliance_regressions 0.0" in metrics


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    if request.param == "sqlite":
        yield None
    else:
        with postgres_database() as url:
            yield url


@pytest.mark.integration
@pytest.mark.slow
def test_a_celery_worker_fails_a_job_on_a_corrupt_base_without_retrying(tmp_path, zoo_dir, database_url):
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        settings = Settings(data_dir=tmp_path / "data", database_url=database_url, broker_url=redis_server.url,
                            batch_window_s=0.2, lease_s=30, max_attempts=3, reconcile_interval_s=1.0)
        migrate(settings.resolved_database_url)
        v1 = register(settings, zoo_dir)
        flip_bit(Path(v1.artifact_path) / "model.safetensors")
        env = {"UNLEARN_DATA_DIR": str(settings.data_dir), "UNLEARN_BROKER_URL": redis_server.url,
               "UNLEARN_DATABASE_URL": settings.resolved_database_url, "UNLEARN_LEASE_S": "30",
               "UNLEARN_MAX_ATTEMPTS": "3"}
        from api.app import create_app
        from api.auth import create_api_key
        from workers.celery_app import make_celery

        celery_app = make_celery(settings)
        with session_scope(settings.resolved_database_url) as s:
            key = create_api_key(s, "acme", "operator")
        client = TestClient(create_app(settings, schedule_coalesce=lambda d: celery_app.send_task(
            "ops.coalesce", kwargs={"force": True}, countdown=d)))
        h = {"X-API-Key": key}
        log = tmp_path / "worker.log"
        with celery_worker(env, log=log):
            resp = client.post("/v1/deletion-requests", json=SUBJECT, headers={**h, "Idempotency-Key": uuid.uuid4().hex})
            assert resp.status_code == 202, resp.text
            rid = resp.json()["id"]
            deadline = time.monotonic() + 120
            while client.get(f"/v1/deletion-requests/{rid}", headers=h).json()["status"] != "failed":
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            time.sleep(6.0)  # longer than the backoff of a second attempt (2 s): none comes
        body = client.get(f"/v1/deletion-requests/{rid}", headers=h).json()
        reason = MISMATCH.format(v=1, id=v1.id)
        assert reason in body["reason"]
        assert [(j["stage"], j["attempts"]) for j in body["jobs"]] == [("failed", 1)], log.read_text()[-3000:]
        assert log.read_text().count(reason) >= 1
        versions = client.get("/v1/models/digits-mlp/versions", headers=h).json()
        assert [(v["version"], v["status"]) for v in versions] == [(1, "quarantined")]
        assert client.post("/v1/models/digits-mlp/rollback", json={"version_id": v1.id, "reason": "back"},
                           headers=h).status_code == 409
    finally:
        redis_server.stop()
