"""A deletion applied on one model but not another still retires the old data where it was applied.

A subject request reaches digits-mlp and digits-acu (the same digits, the same synthetic subjects).
The digits-acu job promotes a version without the subject; the digits-mlp job fails. The request
ends `failed`, yet digits-acu's older versions hold the subject's samples: they are tainted at the
promotion, and no rollback reaches them, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.conftest import register
from unlearn import methods, registry
from unlearn.artifacts import read_meta
from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.methods.acu import run as acu_run
from unlearn.methods.base import MethodSpec, UnlearnTask
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, ModelVersion, UnlearningJob

SUBJECT = "subject-0001"


def _broken_on_mlp(task: UnlearnTask) -> dict:
    """ACU's exact update, except on digits-mlp, where it crashes as a method does under a bad GPU."""
    if read_meta(task.base_dir)["model"] == "digits-mlp":
        raise RuntimeError("device lost (simulated)")
    return acu_run(task)


BROKEN_ON_MLP = MethodSpec(name="broken-on-mlp", families=("classifier",), run=_broken_on_mlp, exact=True)


@pytest.fixture()
def service(empty_database, tmp_path, zoo_dir, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "broken-on-mlp", f"{__name__}:BROKEN_ON_MLP")
    s = Settings(data_dir=tmp_path / "data", database_url=empty_database, batch_window_s=0.0, lease_s=30.0)
    migrate(s.resolved_database_url)
    register(s, zoo_dir, "digits-mlp")
    register(s, zoo_dir, "digits-acu")
    return s


def _versions(s, model: str) -> list[ModelVersion]:
    return list(s.exec(select(ModelVersion).where(ModelVersion.model_name == model)
                       .order_by(ModelVersion.version)).all())


def test_a_version_promoted_on_one_model_taints_its_old_versions_though_the_request_fails(service):
    url = service.resolved_database_url
    with session_scope(url) as s:
        request, targets = submit(s, service, "t", DeletionRequestIn(
            method="broken-on-mlp", scope={"type": "subject", "subject": SUBJECT}))
        assert sorted(t.model_name for t in targets) == ["digits-acu", "digits-mlp"]
        jobs = {s.get(UnlearningJob, j).model_name: j for j in coalesce(s, service, force=True)}
        acu_v1 = registry.champion(s, "digits-acu").id

    # digits-acu first: its new champion excludes the subject while the request is still open.
    assert run_job(service, jobs["digits-acu"], "w").status == "done"
    with session_scope(url) as s:
        assert s.get(DeletionRequest, request.id).status not in ("completed", "failed")
        v1, v2 = _versions(s, "digits-acu")
        assert v1.id == acu_v1 and registry.champion(s, "digits-acu").id == v2.id
        assert (v1.tainted, v1.status) == (True, "retired")  # at once, in the promotion's transaction
        assert not v2.tainted
        assert s.exec(select(AuditEvent).where(AuditEvent.entity_id == v1.id,
                                               AuditEvent.to_state == "tainted")).one().actor == "w"

    outcomes = [run_job(service, jobs["digits-mlp"], f"w{i}").status for i in range(service.max_attempts)]
    assert outcomes[-1] == "failed"
    with session_scope(url) as s:
        assert s.get(DeletionRequest, request.id).status == "failed"
        (mlp_v1,) = _versions(s, "digits-mlp")  # nothing was promoted there: nothing to retire
        assert not mlp_v1.tainted and registry.champion(s, "digits-mlp").id == mlp_v1.id
        with pytest.raises(registry.TaintedVersion):
            registry.rollback(s, "digits-acu", acu_v1, actor="op", reason="undo")
        s.rollback()

    from api.app import create_app
    from api.auth import create_api_key

    with session_scope(url) as s:
        key = create_api_key(s, "ops", "operator")
    client = TestClient(create_app(service), raise_server_exceptions=False)
    r = client.post("/v1/models/digits-acu/rollback", json={"version_id": acu_v1, "reason": "undo"},
                    headers={"X-API-Key": key})
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    assert "tainted" in r.json()["detail"]
    with session_scope(url) as s:
        assert registry.champion(s, "digits-acu").id != acu_v1
