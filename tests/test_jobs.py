"""The job logic driven directly (pure task logic; the Celery path is in test_integration)."""

from datetime import timedelta

import pytest

from unlearn import methods
from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import claim, run_job
from unlearn.methods.base import MethodSpec
from unlearn.operations import reconcile, retry_job
from unlearn.store.db import session_scope
from unlearn.store.models import DeletionRequest, ModelVersion, UnlearningJob, utcnow


def _job(settings, subject="subject-0001", method="auto"):
    with session_scope(settings.resolved_database_url) as s:
        rid = submit(s, settings, "t", DeletionRequestIn(model="digits-mlp", method=method,
                                                          scope={"type": "subject", "subject": subject}))[0].id
        (job_id,) = coalesce(s, settings, force=True)
    return rid, job_id


def test_a_claimed_job_cannot_be_claimed_again_until_its_lease_expires(digits_service):
    settings = digits_service
    _, job_id = _job(settings)
    with session_scope(settings.resolved_database_url) as s:
        assert claim(s, job_id, "w1", lease_s=60) == 1
        assert claim(s, job_id, "w2", lease_s=60) is None
    assert run_job(settings, job_id, "w2").status == "busy"
    with session_scope(settings.resolved_database_url) as s:
        s.get(UnlearningJob, job_id).lease_until = utcnow() - timedelta(seconds=1)
    with session_scope(settings.resolved_database_url) as s:
        assert reconcile(s, settings) == [job_id]  # the expired lease is noticed
    outcome = run_job(settings, job_id, "w2")
    assert outcome.status == "done"
    with session_scope(settings.resolved_database_url) as s:
        job = s.get(UnlearningJob, job_id)
        assert (job.attempts, job.worker.startswith("w2"), job.stage) == (2, True, "done")


def test_one_model_runs_one_job_at_a_time(digits_service):
    settings = digits_service
    _, first = _job(settings, "subject-0001")
    _, second = _job(settings, "subject-0002")
    with session_scope(settings.resolved_database_url) as s:
        assert claim(s, first, "w1", lease_s=60) == 1
    assert run_job(settings, second, "w2").status == "busy"


def _crash(task):
    raise RuntimeError("out of memory (simulated)")


POISON = MethodSpec(name="poison", families=("classifier",), run=_crash)


@pytest.fixture()
def poison(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "poison", f"{__name__}:POISON")
    return POISON


def test_a_poison_job_fails_after_the_attempt_cap_and_an_operator_can_retry(digits_service, poison):
    settings = digits_service
    rid, job_id = _job(settings, method="poison")
    outcomes = [run_job(settings, job_id, f"w{i}").status for i in range(4)]
    assert outcomes == ["retry", "retry", "failed", "skipped"]
    with session_scope(settings.resolved_database_url) as s:
        job = s.get(UnlearningJob, job_id)
        assert job.stage == "failed" and job.attempts == settings.max_attempts
        assert "out of memory" in job.error
        request = s.get(DeletionRequest, rid)
        assert request.status == "failed" and "out of memory" in request.reason
        assert s.get(ModelVersion, job.result_version_id or "none") is None
        retry_job(s, job, actor="op")
        assert s.get(DeletionRequest, rid).status == "queued"


def test_a_subject_forgotten_twice_is_served_without_new_work(digits_service):
    settings = digits_service
    _, first = _job(settings, "subject-0003")
    assert run_job(settings, first, "w").status == "done"
    rid, second = _job(settings, "subject-0003")
    outcome = run_job(settings, second, "w")
    assert (outcome.status, outcome.detail) == ("done", "already forgotten")
    with session_scope(settings.resolved_database_url) as s:
        assert s.get(DeletionRequest, rid).status == "completed"


def test_requests_held_for_review_wait_for_an_operator(digits_service):
    from unlearn.operations import review_request

    settings = digits_service.model_copy(update={"review_required_for": ["class"]})
    with session_scope(settings.resolved_database_url) as s:
        held, _ = submit(s, settings, "t", DeletionRequestIn(model="digits-mlp", scope={"type": "class", "label": 1}))
        denied, _ = submit(s, settings, "t", DeletionRequestIn(model="digits-mlp", scope={"type": "class", "label": 2}))
        assert held.status == "pending_review"
        assert coalesce(s, settings, force=True) == []  # nothing runs before approval
        review_request(s, held, approve=True, actor="op", reason="verified identity")
        review_request(s, denied, approve=False, actor="op", reason="art. 17(3) exception")
        assert len(coalesce(s, settings, force=True)) == 1
        assert s.get(DeletionRequest, denied.id).status == "rejected"
        assert "art. 17(3)" in s.get(DeletionRequest, denied.id).reason
